"""Command line: `serve` (Granian), `check-config` (validate and print settings), `fetch-model` (init container)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from llm_inference.settings import Settings, SettingsError, load_settings, masked

log = logging.getLogger("llm_inference")

EXIT_BAD_CONFIG = 2
# Time Granian's worker gets after the drain to stop and close the engine before it is killed. The Helm
# chart's terminationGracePeriodSeconds leaves room for it (helm/llm-inference/templates/_helpers.tpl).
WORKER_KILL_MARGIN_SECONDS = 5


def stop_start_up(header: str, lines: Iterable[str]) -> NoReturn:
    print(header, file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG)


def settings_or_exit() -> Settings:
    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        stop_start_up("invalid configuration:", exc.lines)
    from llm_inference.telemetry.logging import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    for warning in warnings:
        log.warning(warning)
    return settings


def exit_if_no_backend(settings: Settings) -> None:
    """A model no backend can run here (LLM_BACKEND=vllm without vLLM or a GPU), or one whose backend cannot
    quantize it to LLM_ISQ_TYPE, stops start-up at once."""
    from llm_inference.engines.selection import gpu_offload_problem, unavailable_backends
    from llm_inference.model_spec import parse_spec

    problems = unavailable_backends(
        settings.backend,
        [parse_spec(s, settings.model_path) for s in settings.allowed_models],
        settings.isq_type if settings.enable_isq else None,
    )
    if (offload := gpu_offload_problem(settings.gpu_layers)) is not None:
        problems.append(offload)
    if problems:
        stop_start_up("cannot serve the allowed models on this machine:", problems)


def serve(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    from llm_inference.telemetry.logging import granian_log_config

    exit_if_no_backend(settings)
    scheme = "https" if settings.tls_enabled else "http"
    log.info("starting", extra={"url": f"{scheme}://{settings.inference_hostname}:{settings.inference_port}"})
    server = Granian(
        "llm_inference.asgi:app",
        address=settings.inference_hostname,
        port=settings.inference_port,
        interface=Interfaces.ASGI,
        # One worker: the model lives in the process, and a second worker would load a second copy.
        workers=1,
        ssl_cert=Path(settings.tls_cert_path) if settings.tls_enabled and settings.tls_cert_path else None,
        ssl_key=Path(settings.tls_key_path) if settings.tls_enabled and settings.tls_key_path else None,
        log_access=False,  # the app writes its own access log (telemetry/http.py)
        log_dictconfig=granian_log_config(settings.log_format),
        log_level=LogLevels(settings.log_level.lower()),
        # Backstop for the drain (drain.py), which ends by itself after LLM_SHUTDOWN_GRACE_SECONDS.
        workers_kill_timeout=math.ceil(settings.shutdown_grace_seconds) + WORKER_KILL_MARGIN_SECONDS,
    )
    server.serve()


def check_config(settings: Settings) -> None:
    print(json.dumps(masked(settings), indent=2, default=str))


def fetch_models(settings: Settings) -> None:
    from llm_inference.model_spec import parse_spec
    from llm_inference.models.fetch import fetch, prepare_isq

    failed = False
    for text in settings.allowed_models:
        spec = parse_spec(text, settings.model_path)
        try:
            path, tokenizer = fetch(spec)
            # With ISQ on llama.cpp, quantize here too, so the server finds the file in the cache.
            path = prepare_isq(spec, path, settings)
        except Exception as exc:  # report every model, then fail the init container once
            log.error("model unavailable", extra={"model": spec.id, "error": f"{type(exc).__name__}: {exc}"})
            failed = True
            continue
        print(f"{spec.id}\t{path}" + (f"\t{tokenizer}" if tokenizer else ""))
    if failed:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llm-inference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the HTTP API (Granian)")
    commands.add_parser("check-config", help="validate LLM_* variables and print the effective settings")
    commands.add_parser("fetch-model", help="download/prepare every allowed model, then exit")
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    # Checked here, once, before Granian starts its worker (which reads the settings again, not this).
    from llm_inference.telemetry.tracing import batch_settings_problem

    problem = batch_settings_problem()
    if problem:
        stop_start_up("invalid configuration:", [problem])
    {"serve": serve, "check-config": check_config, "fetch-model": fetch_models}[args.command](settings)
