"""The service's settings: read once from LLM_* environment variables into one frozen, validated object."""

from __future__ import annotations

import difflib
import os
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from llm_inference.auth_keys import key_problems, parse_key_entries
from llm_inference.engines.config import ISQ_TYPES, LLAMACPP_ISQ_ALIASES, canonical_isq_type
from llm_inference.model_spec import EMBEDDED_MODEL, InvalidModelSpec, InvalidShares, gpu_memory_shares, parse_spec

ENV_PREFIX = "LLM_"

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
# A URL path prefix: segments of unreserved characters, a leading "/" and no trailing one.
BASE_PATH_PATTERN = r"^(/[A-Za-z0-9._~-]+)+$"
BASE_PATH_RULE = (
    "a path that starts with / and does not end with /, its parts made of letters, digits and . _ ~ - "
    "(e.g. /llm or /team/llm; unset, the service answers at /)"
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every field is read from LLM_<FIELD NAME IN UPPER CASE>; .env.example documents each one.

    One flat struct, so that code reads `settings.max_tokens_limit`; the fields are declared by concern, and
    SECTIONS below names each concern's fields (.env.example, the docs' table and the chart's schema follow it).
    """

    # --- Server: where and how it listens ---
    inference_hostname: str = "0.0.0.0"
    inference_port: Port = 8091
    # Every route under this prefix (/llm: /llm/health/ready, /llm/v1/...), for an ingress that forwards it.
    base_path: Annotated[str, msgspec.Meta(pattern=BASE_PATH_PATTERN)] | None = None
    tls_enabled: bool = False
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    cors_allowed_origins: tuple[str, ...] = ("*",)
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    sse_ping_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    shutdown_grace_seconds: NonNegativeFloat = 30.0

    # --- Models: what may be served, where it comes from, which backend serves it ---
    allowed_models: tuple[str, ...] = (EMBEDDED_MODEL,)
    default_model: str | None = None
    # Several models (docs/models.md "Several models"): which load at start-up, how many stay loaded, failed-load retry.
    preload_models: tuple[str, ...] = ()  # empty: the default model
    max_loaded_models: PositiveInt | None = None  # None: every allowed model may stay loaded
    model_retry_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    model_path: str | None = None
    backend: Literal["auto", "llamacpp", "vllm"] = "auto"
    context_length: PositiveInt | None = None
    # In-situ quantization (docs/isq.md): each model is quantized to LLM_ISQ_TYPE while loading;
    # unset, fp8 on vLLM and Q4_K_M on llama.cpp. Whether the backend serving a model has the type is checked at
    # start-up. llama.cpp keeps what it quantized in LLM_ISQ_CACHE_DIR (unset: default_isq_cache_dir()).
    enable_isq: bool = False
    isq_type: str | None = None
    isq_cache_dir: str | None = None

    # --- llama.cpp engine ---
    # The KV cache (docs/cpu.md "KV memory"). pool: one pool all sequences share, of
    # LLM_KV_CACHE_TOKENS (unset: 8192, or LLM_CONTEXT_LENGTH if larger, cut to what fits); per-slot: a whole context
    # per concurrent request, greedy outputs independent of batch neighbours. Either within
    # LLM_KV_CACHE_MEMORY_FRACTION of the memory limit (the cgroup's, else physical memory).
    kv_cache_layout: Literal["pool", "per-slot"] = "pool"
    kv_cache_tokens: Annotated[int, msgspec.Meta(ge=256)] | None = None
    kv_cache_type: Literal["f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"] = "f16"
    kv_cache_memory_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    threads: PositiveInt | None = None
    # llama.cpp layers offloaded to a GPU: -1 every layer, 0 none; unset: every layer when this llama.cpp build
    # can offload (the CUDA image's), else none.
    gpu_layers: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    # Prompt tokens a decode step takes while other sequences decode (docs/cpu.md).
    prefill_chunk_tokens: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 2048
    # Its extra CPU weight layouts (repacked weights, AMX tiles); auto: on unless AMX is built in.
    weight_repack: Literal["auto", "on", "off"] = "auto"

    # --- vLLM engine (llama.cpp ignores these; see .env.example) ---
    gpu_memory_utilization: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    # model=fraction pairs: a vLLM model's share of the card; unlisted ones split LLM_GPU_MEMORY_UTILIZATION.
    gpu_memory_shares: tuple[str, ...] = ()
    max_model_len: PositiveInt | None = None
    tensor_parallel_size: PositiveInt = 1
    # Model larger than one node: pipeline stages over nodes, joined by Ray (docs/kubernetes.md "Models larger than one node").
    pipeline_parallel_size: PositiveInt = 1
    # auto: vLLM's own choice (its multiprocessing workers on one node, Ray when a Ray cluster is running).
    distributed_executor_backend: Literal["auto", "mp", "ray"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_num_seqs: PositiveInt | None = None
    max_num_batched_tokens: PositiveInt | None = None
    enable_prefix_caching: bool = True
    enforce_eager: bool = False

    # --- Request defaults and limits ---
    default_temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    default_top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    default_max_tokens: PositiveInt = 512
    max_tokens_limit: PositiveInt = 4096
    max_stop_sequences: Annotated[int, msgspec.Meta(ge=0, le=64)] = 8
    max_batch_prompts: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    # OpenAI's vocabulary (docs/openai.md): choices per request (n, and prompts in one /v1
    # completions request), alternatives per token (top_logprobs), logit_bias entries.
    max_choices: Annotated[int, msgspec.Meta(ge=1, le=128)] = 8
    max_top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] = 20
    max_logit_bias: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 300

    # --- Admission and timeouts ---
    max_concurrent_requests: PositiveInt = 10
    max_queued_requests: Annotated[int, msgspec.Meta(ge=0)] = 32
    request_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    engine_stall_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0

    # --- Access: API keys and rate limits (docs/hardening.md) ---
    api_keys: tuple[str, ...] = ()
    api_keys_file: str | None = None
    # The playground's page and files (/, /ui) carry no secret; its API calls carry the key.
    auth_exempt_paths: tuple[str, ...] = (
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/swagger-ui",
        "/",
        "/ui",
    )
    # Requests and tokens (prompt + completion) a minute per API key, or per client address without keys; 0: no
    # limit. A key may have its own in the key file (docs/hardening.md). Per process, or shared with LLM_STATE_URL.
    rate_limit_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0
    tokens_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0

    # --- Sessions and shared state ---
    # Server-side conversations (docs/api.md "Sessions"): at most this many per replica, the least recently used
    # evicted to make room; one idle this long is forgotten.
    max_sessions: PositiveInt = 1000
    session_ttl_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    # Shared state (docs/many-replicas.md): unset, rate limits, token quotas and
    # sessions live in each process. A redis:// or rediss:// URL (Valkey or Redis) shares them between every
    # replica and worker; its password from the URL or from a file, TLS verified against the system's CAs or a
    # CA file. Every call to the store is bounded by state_timeout_seconds; while it does not answer, rate limits
    # let requests through (open) or refuse them with 503 (closed), sessions answer 503, and readiness is
    # affected only with state_required_for_readiness.
    state_url: str | None = None
    state_password_file: str | None = None
    state_tls_ca_file: str | None = None
    state_key_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "llm-inference:"
    state_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.5
    rate_limit_on_state_failure: Literal["open", "closed"] = "open"
    state_required_for_readiness: bool = False

    # --- Tool calling ---
    # How tools reach the model and calls come back (docs/tool-calling.md): auto, the chat template's own format
    # where it has one known here, else the generic constrained JSON one; or one of them for every model.
    tool_call_format: Literal["auto", "generic", "hermes", "llama3_json", "mistral"] = "auto"
    # Server-side tool rounds (docs/tool-calling.md "Server-side tool rounds"): calls to tools a request marks `server` are
    # POSTed to this URL (unset: such requests are refused), with the bearer token the key file holds; each
    # call bounded in time and in the size of its answer, at most max_tool_rounds rounds per request.
    tool_dispatch_url: str | None = None
    tool_dispatch_key_file: str | None = None
    tool_dispatch_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    max_tool_rounds: PositiveInt = 4
    tool_result_max_bytes: PositiveInt = 65536

    # --- Telemetry: logs, metrics' and traces' service name ---
    log_format: Literal["json", "pretty"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    service_name: Annotated[str, msgspec.Meta(min_length=1)] = "llm-inference"
    # Record prompt and completion text in trace spans (never in logs or metrics).
    trace_content: bool = False

    # --- Playground ---
    # The chat playground at GET / (docs/playground.md); false: / answers 404.
    ui_enabled: bool = True

    @property
    def effective_default_model(self) -> str:
        return self.default_model or self.allowed_models[0]

    @property
    def effective_isq_cache_dir(self) -> Path:
        return Path(self.isq_cache_dir).expanduser() if self.isq_cache_dir else default_isq_cache_dir()

    @property
    def effective_preload_models(self) -> tuple[str, ...]:
        return self.preload_models or (self.effective_default_model,)

    @property
    def effective_max_loaded_models(self) -> int:
        return self.max_loaded_models or len(self.allowed_models)


class Section(NamedTuple):
    """One concern of the settings: its title, a line on what it covers, and its fields in declaration order."""

    title: str
    about: str
    fields: tuple[str, ...]


# The settings by concern: .env.example's sections, the docs' tables and the chart schema's descriptions follow it.
SECTIONS: tuple[Section, ...] = (
    Section(
        "Server",
        "Where and how the service listens: address, path prefix, TLS, CORS, request size, stream keep-alive, drain.",
        (
            "inference_hostname",
            "inference_port",
            "base_path",
            "tls_enabled",
            "tls_cert_path",
            "tls_key_path",
            "cors_allowed_origins",
            "max_request_bytes",
            "sse_ping_seconds",
            "shutdown_grace_seconds",
        ),
    ),
    Section(
        "Models",
        "What may be served, where it comes from, which backend serves it, how many stay loaded, quantization.",
        (
            "allowed_models",
            "default_model",
            "preload_models",
            "max_loaded_models",
            "model_retry_seconds",
            "model_path",
            "backend",
            "context_length",
            "enable_isq",
            "isq_type",
            "isq_cache_dir",
        ),
    ),
    Section(
        "llama.cpp engine",
        "Read by the llama.cpp backend only (GGUF models, and every model on a machine without a CUDA GPU).",
        (
            "kv_cache_layout",
            "kv_cache_tokens",
            "kv_cache_type",
            "kv_cache_memory_fraction",
            "threads",
            "gpu_layers",
            "prefill_chunk_tokens",
            "weight_repack",
        ),
    ),
    Section(
        "vLLM engine",
        "Read by the vLLM backend only (LLM_BACKEND=vllm, or auto on a CUDA GPU); llama.cpp ignores these.",
        (
            "gpu_memory_utilization",
            "gpu_memory_shares",
            "max_model_len",
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "distributed_executor_backend",
            "dtype",
            "max_num_seqs",
            "max_num_batched_tokens",
            "enable_prefix_caching",
            "enforce_eager",
        ),
    ),
    Section(
        "Request defaults and limits",
        "What a request gets when it leaves a field out, and the most it may ask for.",
        (
            "default_temperature",
            "default_top_p",
            "default_max_tokens",
            "max_tokens_limit",
            "max_stop_sequences",
            "max_batch_prompts",
            "max_choices",
            "max_top_logprobs",
            "max_logit_bias",
        ),
    ),
    Section(
        "Admission and timeouts",
        "How many requests run and wait, and how long one may take.",
        ("max_concurrent_requests", "max_queued_requests", "request_timeout_seconds", "engine_stall_seconds"),
    ),
    Section(
        "Access",
        "API keys, the paths open without one, and rate limits (docs/hardening.md).",
        ("api_keys", "api_keys_file", "auth_exempt_paths", "rate_limit_per_minute", "tokens_per_minute"),
    ),
    Section(
        "Sessions and shared state",
        "Server-side sessions, and the Valkey or Redis store that replicas share limits and sessions through.",
        (
            "max_sessions",
            "session_ttl_seconds",
            "state_url",
            "state_password_file",
            "state_tls_ca_file",
            "state_key_prefix",
            "state_timeout_seconds",
            "rate_limit_on_state_failure",
            "state_required_for_readiness",
        ),
    ),
    Section(
        "Tool calling",
        "How tools reach the model, and the server-side tool rounds.",
        (
            "tool_call_format",
            "tool_dispatch_url",
            "tool_dispatch_key_file",
            "tool_dispatch_timeout_seconds",
            "max_tool_rounds",
            "tool_result_max_bytes",
        ),
    ),
    Section(
        "Telemetry",
        "Logs, and the service's name in logs, metrics and traces (OTEL_* configures the trace export).",
        ("log_format", "log_level", "service_name", "trace_content"),
    ),
    Section("Playground", "The chat page at GET /.", ("ui_enabled",)),
)


def _check_sections() -> None:
    # Every field in exactly one section, the sections in the struct's order: a new field must be placed.
    listed = [name for section in SECTIONS for name in section.fields]
    if listed != list(Settings.__struct_fields__):
        missing = set(Settings.__struct_fields__) - set(listed)
        raise RuntimeError(f"SECTIONS must list every Settings field once, in declaration order (missing: {missing})")


_check_sections()


def section_of(field: str) -> Section:
    return next(section for section in SECTIONS if field in section.fields)


def default_isq_cache_dir() -> Path:
    """Beside the downloaded models when HF_HOME says where they go (the images and the chart set it, on the model
    cache volume), else in the user's cache directory ($XDG_CACHE_HOME or ~/.cache); then llm-inference/isq."""
    base = os.environ.get("HF_HOME") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "llm-inference" / "isq"


ISQ_TYPE_RULE = (
    f"one of {' | '.join(ISQ_TYPES['vllm'])} (vLLM) or {' | '.join(ISQ_TYPES['llamacpp'])} (llama.cpp), in any "
    f"case ({', '.join(f'{a} means {t}' for a, t in LLAMACPP_ISQ_ALIASES.items())})"
)


DEFAULTS = Settings()


# Constraints that msgspec.Meta cannot express, as (field, check, rule) triples checked after types.
def _cross_field_errors(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    base_path = values.get("base_path")
    if base_path is not None and (problem := base_path_problem(base_path)):
        errors.append(("base_path", problem))  # the pattern lets "." and ".." through
    allowed = values.get("allowed_models", DEFAULTS.allowed_models)
    if not allowed:
        errors.append(("allowed_models", "at least one model spec, comma-separated"))
    for spec in allowed:
        try:
            parse_spec(spec, values.get("model_path"))
        except InvalidModelSpec as exc:
            errors.append(("allowed_models", str(exc)))
    default = values.get("default_model")
    if default and default not in allowed:
        errors.append(("default_model", f"one of LLM_ALLOWED_MODELS ({', '.join(allowed)})"))
    errors.extend(_multi_model_errors(values, allowed))
    pool, context = values.get("kv_cache_tokens"), values.get("context_length")
    if pool is not None and context is not None and context > pool:
        errors.append(("context_length", f"an integer <= LLM_KV_CACHE_TOKENS ({pool}), the pool a sequence lives in"))
    limit = values.get("max_tokens_limit", DEFAULTS.max_tokens_limit)
    if values.get("default_max_tokens", DEFAULTS.default_max_tokens) > limit:
        errors.append(("default_max_tokens", f"an integer <= LLM_MAX_TOKENS_LIMIT ({limit})"))
    if values.get("tls_enabled"):
        for name in ("tls_cert_path", "tls_key_path"):
            path = values.get(name)
            if not path:
                errors.append((name, "a readable PEM file path (required when LLM_TLS_ENABLED=true)"))
            elif not os.access(path, os.R_OK) or not Path(path).is_file():
                errors.append((name, "a readable PEM file path (file missing or unreadable)"))
        if not errors:
            errors.extend(_tls_pair_errors(values["tls_cert_path"], values["tls_key_path"]))
    errors.extend(_api_key_errors(values))
    errors.extend(_tool_dispatch_errors(values))
    errors.extend(_state_errors(values))
    return errors


def _multi_model_errors(values: Mapping[str, Any], allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    preload = values.get("preload_models", ())
    for model in preload:
        if model not in allowed:
            errors.append(("preload_models", f"models of LLM_ALLOWED_MODELS ({', '.join(allowed)})"))
    places = values.get("max_loaded_models")
    needed = len(set(preload)) or 1
    if places is not None and places < needed:
        errors.append(("max_loaded_models", f"an integer >= {needed}, the number of LLM_PRELOAD_MODELS"))
    if errors or not allowed:
        return errors
    try:
        utilization = values.get("gpu_memory_utilization", DEFAULTS.gpu_memory_utilization)
        gpu_memory_shares(
            allowed, values.get("model_path"), places or len(allowed), utilization, values.get("gpu_memory_shares", ())
        )
    except InvalidShares as exc:
        errors.append(("gpu_memory_shares", str(exc)))
    except InvalidModelSpec:
        pass  # reported on LLM_ALLOWED_MODELS
    return errors


def _tls_pair_errors(cert: str, key: str) -> list[tuple[str, str]]:
    """Load the pair as Granian will, so a bad file stops start-up here with its name, not in a worker."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)
    except (ssl.SSLError, OSError) as exc:
        return [("tls_cert_path", f"a PEM certificate ({exc})")]
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return [("tls_key_path", f"a PEM private key, unencrypted, matching LLM_TLS_CERT_PATH ({exc})")]
    return []


def _api_key_errors(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    entries = [entry for text in values.get("api_keys", ()) for entry in parse_key_entries(text)]
    problems = key_problems(entries)
    errors = [("api_keys", f"keys separated by commas ({p})") for p in problems]
    path = values.get("api_keys_file")
    if path:
        try:
            entries = parse_key_entries(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            return [*errors, ("api_keys_file", f"a readable UTF-8 file of API keys ({type(exc).__name__})")]
        problems = key_problems(entries) or ([] if entries else ["no key in the file"])
        errors += [("api_keys_file", f"a file of API keys, one per line ({p})") for p in problems]
    return errors


def _tool_dispatch_errors(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    url = values.get("tool_dispatch_url")
    if url is not None and not valid_http_url(url):
        errors.append(("tool_dispatch_url", "an http:// or https:// URL with a host, e.g. http://tools:8080/call"))
    path = values.get("tool_dispatch_key_file")
    if path:
        try:
            read_bearer_token(path)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(("tool_dispatch_key_file", f"a readable UTF-8 file holding one token ({type(exc).__name__})"))
        except ValueError as exc:
            errors.append(("tool_dispatch_key_file", f"a file holding one token ({exc})"))
    return errors


STATE_URL_RULE = (
    "a redis:// or rediss:// (TLS) URL of a Valkey or Redis server: redis://[[user]:password@]host[:port][/db], "
    "e.g. redis://valkey:6379/0"
)


def _state_errors(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    url = values.get("state_url")
    if url is not None and not valid_state_url(url):
        errors.append(("state_url", STATE_URL_RULE))
    needs_url = {
        "state_password_file": values.get("state_password_file"),
        "state_tls_ca_file": values.get("state_tls_ca_file"),
        "state_required_for_readiness": values.get("state_required_for_readiness"),
    }
    for name, value in needs_url.items():
        if value and url is None:
            errors.append((name, "to be left unset while LLM_STATE_URL is unset (it is a setting of the shared store)"))
    if url is None:
        return errors
    path = values.get("state_password_file")
    if path:
        try:
            read_secret_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(("state_password_file", f"a readable UTF-8 file holding the password ({type(exc).__name__})"))
        except ValueError as exc:
            errors.append(("state_password_file", f"a file holding the password on one line ({exc})"))
    ca = values.get("state_tls_ca_file")
    if ca:
        if not url.startswith("rediss://"):
            errors.append(("state_tls_ca_file", "a CA file for a rediss:// LLM_STATE_URL (this one is not TLS)"))
        else:
            try:
                ssl.create_default_context(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                errors.append(("state_tls_ca_file", f"a readable PEM file of CA certificates ({exc})"))
    return errors


def _split_url(url: str) -> urllib.parse.SplitResult | None:
    """The URL's parts, or None when it does not parse or its port is not a number in range."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        return None
    return parts


def valid_state_url(url: str) -> bool:
    if (parts := _split_url(url)) is None:
        return False
    database = parts.path.lstrip("/")
    return (
        parts.scheme in ("redis", "rediss")
        and bool(parts.hostname)
        and (database == "" or (database.isdigit() and parts.path.count("/") == 1))
        and not parts.query
        and not parts.fragment
        and not any(c.isspace() for c in url)
    )


def redacted_url(url: str) -> str:
    """The URL with the password of its user part (if any) replaced by ***, for logs and error lines."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def read_secret_file(path: str) -> str:
    """A password kept in a file (a mounted Secret): its text without the surrounding whitespace, on one line.
    ValueError says what is wrong, without the password."""
    secret = Path(path).read_text(encoding="utf-8").strip()
    if not secret:
        raise ValueError("the file is empty")
    if "\n" in secret or "\r" in secret:
        raise ValueError("the file has more than one line")
    return secret


def valid_http_url(url: str) -> bool:
    if (parts := _split_url(url)) is None:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def read_bearer_token(path: str) -> str:
    """The token a key file holds: its text without surrounding whitespace, on one line with no spaces (it is
    sent as `Authorization: Bearer <token>`). ValueError says what is wrong, without the token."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError("the file is empty")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ValueError("the token has whitespace or control characters in it")
    return token


class SettingsError(Exception):
    """Invalid settings; `lines` holds one human-readable line per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def setting_names() -> list[str]:
    return [env_name(f.name) for f in msgspec.structs.fields(Settings)]


def _describe(field_type: Any) -> str:
    """A short statement of what a field accepts, for error messages."""
    schema = msgspec.json.schema(field_type)
    if "anyOf" in schema:
        schema = next((s for s in schema["anyOf"] if s.get("type") != "null"), schema)
    if "enum" in schema:
        return "one of " + " | ".join(str(v) for v in schema["enum"])
    kind = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string"}
    words = [kind.get(schema.get("type", ""), "a list of strings, comma-separated")]
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    words += [f"{op} {schema[key]}" for key, op in bounds.items() if key in schema]
    if "minLength" in schema:
        words.append("(not empty)")
    return " ".join(words)


# Fields whose rule the type alone does not say well, in the words start-up's error uses.
FIELD_RULES = {"isq_type": ISQ_TYPE_RULE, "base_path": BASE_PATH_RULE}


def base_path_problem(path: str) -> str | None:
    """None for a usable path prefix (LLM_BASE_PATH, a mount's path), else the rule it breaks."""
    parts = path.split("/")[1:]
    if re.fullmatch(BASE_PATH_PATTERN, path) and not any(part in (".", "..") for part in parts):
        return None
    return BASE_PATH_RULE


def accepts(field: str) -> str:
    """What a setting accepts, as its error message says it (the docs' table shows the same words)."""
    return FIELD_RULES.get(field) or _describe(_field_types()[field])


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(Settings)}


def _parse(raw: str, field_type: Any) -> Any:
    if field_type == tuple[str, ...]:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if (isinstance(field_type, type) and issubclass(field_type, str)) or field_type == str | None:
        return raw
    return msgspec.convert(raw, field_type, strict=False)


def load_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Validate every LLM_* variable; return the settings and warnings, or raise SettingsError."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    known = {env_name(name): name for name in fields}
    values: dict[str, Any] = {}
    errors: list[tuple[str, str, str]] = []  # (variable, value, rule)
    for variable, name in known.items():
        raw = environ.get(variable)
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        field_type = fields[name].type
        if name == "log_level":
            raw = raw.upper()
        if name == "isq_type":
            canonical = canonical_isq_type(raw)
            if canonical is None:
                errors.append((variable, raw, ISQ_TYPE_RULE))
                continue
            raw = canonical
        try:
            values[name] = _parse(raw, field_type)
        except msgspec.ValidationError:
            errors.append((variable, raw, accepts(name)))
    if not errors:
        for name, rule in _cross_field_errors(values):
            errors.append((env_name(name), str(environ.get(env_name(name), "")), rule))
    if errors:
        raise SettingsError(
            [f"{var}={_shown(var, value)!r} is invalid: expected {rule}" for var, value, rule in errors]
        )
    warnings = []
    for variable in sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in known):
        close = difflib.get_close_matches(variable, list(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown setting {variable} is ignored{hint}")
    for legacy, replacement in LEGACY_VARIABLES.items():
        if legacy in environ:
            warnings.append(f"{legacy} is not read by this service and is ignored; set {replacement} instead")
    return Settings(**values), warnings


# The seed system's own variable names. They are not settings here; set, they earn a warning naming the
# LLM_* variable that replaces them (docs/configuration.md "Coming from the seed system": migrating).
LEGACY_VARIABLES = {
    "CORS_ALLOWED_ORIGINS": "LLM_CORS_ALLOWED_ORIGINS",
    "SERVICE_NAME": "LLM_SERVICE_NAME",
    "LOG_FORMAT": "LLM_LOG_FORMAT",
    "SERVER_SSL_ENABLED": "LLM_TLS_ENABLED",
    "TLS_SERVER_CERT_PATH": "LLM_TLS_CERT_PATH",
    "TLS_SERVER_KEY_PATH": "LLM_TLS_KEY_PATH",
}

SECRET_MARKERS = ("key", "keys", "token", "secret", "password")


def is_secret(name: str) -> bool:
    """Whether a setting holds a secret value. Markers are whole words of the name (max_tokens is no token),
    and a *path* to a key or a key file is not itself secret."""
    words = name.lower().split("_")
    return any(m in words for m in SECRET_MARKERS) and words[-1] not in ("path", "file", "paths")


# Settings that hold a URL whose user part may carry a password.
URL_SETTINGS = ("state_url",)


def _shown(variable: str, value: str) -> str:
    # An error line must not print an API key that was only mistyped, nor a password inside a URL.
    if variable in {env_name(name) for name in URL_SETTINGS}:
        return redacted_url(value)
    return "***" if is_secret(variable) and value else value


def masked(settings: Settings) -> dict[str, Any]:
    """Effective settings keyed by variable name, with secret values replaced (key *paths* stay visible)."""
    shown: dict[str, Any] = {}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        secret = is_secret(name)
        if isinstance(value, tuple):
            value = ",".join(value)
        if name in URL_SETTINGS and value:
            value = redacted_url(value)
        shown[env_name(name)] = "***" if secret and value else value
    return shown
