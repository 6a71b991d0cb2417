"""Log setup: one JSON object per line (LLM_LOG_FORMAT=json) or readable lines (pretty).

Inside a traced request every line carries the current trace_id and span_id, so a log search can jump to the
trace and back. Prompts, completions and credentials are never logged: callers pass ids and counts only.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace

# Attributes every LogRecord has; anything else was passed through `extra=` and is structured context.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, object]:
    context = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        context["trace_id"] = trace.format_trace_id(span.trace_id)
        context["span_id"] = trace.format_span_id(span.span_id)
    return context


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class PrettyFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            line += f"  [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PrettyFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Granian's own loggers would otherwise print in their own format next to ours.
    for name in ("_granian", "granian.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def granian_log_config(log_format: str) -> dict[str, Any]:
    """Granian's logging dictConfig: its main process never runs configure_logging, yet must log alike."""
    formatter = JsonFormatter if log_format == "json" else PrettyFormatter
    return {
        "formatters": {"service": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
        },
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
