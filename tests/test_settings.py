"""Settings come only from LLM_* variables; every bad value is reported by name, value and rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm_inference.models.engine_config import gpu_memory_share, vllm_config
from llm_inference.settings import (
    SECTIONS,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    masked,
    section_of,
    setting_names,
)
from tests.server import run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    settings, warnings = load_settings({})
    assert warnings == []
    assert settings.allowed_models == ("smollm2-135m-instruct",)
    assert settings.effective_default_model == "smollm2-135m-instruct"
    assert (settings.inference_hostname, settings.inference_port) == ("0.0.0.0", 8091)
    assert settings.default_temperature == 0.7 and settings.default_top_p == 0.9
    assert settings.default_max_tokens == 512 and settings.max_tokens_limit == 4096
    assert settings.max_concurrent_requests == 10
    assert settings.backend == "auto" and settings.tls_enabled is False


def test_values_are_parsed() -> None:
    settings, _ = load_settings(
        {
            "LLM_INFERENCE_PORT": "9000",
            "LLM_TLS_ENABLED": "false",
            "LLM_DEFAULT_TEMPERATURE": "0",
            "LLM_CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "LLM_LOG_LEVEL": "debug",
        }
    )
    assert settings.inference_port == 9000
    assert settings.default_temperature == 0.0
    assert settings.cors_allowed_origins == ("https://a.example", "https://b.example")
    assert settings.log_level == "DEBUG"
    assert load_settings({"LLM_BASE_PATH": "/team/llm"})[0].base_path == "/team/llm"


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("LLM_INFERENCE_PORT", "http", "an integer >= 1 <= 65535"),
        ("LLM_INFERENCE_PORT", "70000", "<= 65535"),
        ("LLM_DEFAULT_TEMPERATURE", "3", "a number >= 0 <= 2"),
        ("LLM_DEFAULT_TOP_P", "0", "> 0"),
        ("LLM_BACKEND", "tpu", "one of auto | llamacpp | vllm"),
        ("LLM_LOG_FORMAT", "xml", "one of json | pretty"),
        ("LLM_TLS_ENABLED", "maybe", "true or false"),
        ("LLM_MAX_CONCURRENT_REQUESTS", "0", ">= 1"),
        ("LLM_DEFAULT_MODEL", "other/model", "one of LLM_ALLOWED_MODELS"),
        ("LLM_ALLOWED_MODELS", "not a spec!", "is not a model spec"),
        ("LLM_DEFAULT_MAX_TOKENS", "5000", "<= LLM_MAX_TOKENS_LIMIT (4096)"),
        ("LLM_MAX_SESSIONS", "0", "an integer >= 1"),
        ("LLM_SESSION_TTL_SECONDS", "forever", "a number > 0"),
        ("LLM_PIPELINE_PARALLEL_SIZE", "0", "an integer >= 1"),
        ("LLM_DISTRIBUTED_EXECUTOR_BACKEND", "mpi", "one of auto | mp | ray"),
        ("LLM_ISQ_TYPE", "Q4K", "one of fp8 (vLLM) or Q4_0 | Q4_1 |"),
        ("LLM_PREFILL_CHUNK_TOKENS", "2049", "an integer >= 1 <= 2048"),
        ("LLM_WEIGHT_REPACK", "amx", "one of auto | off | on"),
        ("LLM_BASE_PATH", "llm", "a path that starts with / and does not end with /"),
        ("LLM_BASE_PATH", "/llm/", "a path that starts with / and does not end with /"),
        ("LLM_BASE_PATH", "/", "unset, the service answers at /"),
        ("LLM_BASE_PATH", "/a/../b", "(e.g. /llm or /team/llm"),
    ],
)
def test_bad_value_names_variable_value_and_rule(variable: str, value: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    [line] = caught.value.lines
    assert line.startswith(f"{variable}={value!r}"), line
    assert rule in line, line


def test_isq_type_takes_any_case_and_llamacpps_short_names() -> None:
    assert load_settings({})[0].isq_type is None  # each backend's default
    assert load_settings({"LLM_ISQ_TYPE": "q4_k_s"})[0].isq_type == "Q4_K_S"
    assert load_settings({"LLM_ISQ_TYPE": "Q4_K"})[0].isq_type == "Q4_K_M"
    assert load_settings({"LLM_ISQ_TYPE": "FP8"})[0].isq_type == "fp8"


def test_the_isq_cache_sits_beside_the_downloaded_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert load_settings({})[0].effective_isq_cache_dir == tmp_path / "hf" / "llm-inference" / "isq"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert load_settings({})[0].effective_isq_cache_dir == tmp_path / "xdg" / "llm-inference" / "isq"
    chosen = load_settings({"LLM_ISQ_CACHE_DIR": "~/isq"})[0].effective_isq_cache_dir
    assert chosen == Path.home() / "isq"


def test_every_bad_variable_gets_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LLM_INFERENCE_PORT": "x", "LLM_BACKEND": "y", "LLM_DEFAULT_TOP_P": "2"})
    assert [line.split("=")[0] for line in caught.value.lines] == sorted(
        ["LLM_INFERENCE_PORT", "LLM_BACKEND", "LLM_DEFAULT_TOP_P"], key=setting_names().index
    )


def test_tls_needs_readable_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LLM_TLS_ENABLED": "true", "LLM_TLS_KEY_PATH": str(tmp_path / "missing.pem")})
    text = "\n".join(caught.value.lines)
    assert "LLM_TLS_CERT_PATH" in text and "required when LLM_TLS_ENABLED=true" in text
    assert "LLM_TLS_KEY_PATH" in text and "missing or unreadable" in text


def test_unknown_variable_warns_with_the_closest_name() -> None:
    _, warnings = load_settings({"LLM_MAX_TOKEN_LIMIT": "10"})
    assert warnings == ["unknown setting LLM_MAX_TOKEN_LIMIT is ignored; did you mean LLM_MAX_TOKENS_LIMIT?"]


def test_masked_hides_secrets_but_not_paths() -> None:
    settings, _ = load_settings({})
    shown = masked(settings)
    assert set(shown) == set(setting_names())
    assert shown["LLM_INFERENCE_PORT"] == 8091


def test_env_example_lists_exactly_the_settings() -> None:
    text = (ROOT / ".env.example").read_text()
    names = re.findall(r"^(LLM_[A-Z0-9_]+)=", text, flags=re.M)
    assert sorted(names) == sorted(setting_names())
    # and each default written there is one the service accepts
    values = dict(re.findall(r"^(LLM_[A-Z0-9_]+)=(.*)$", text, flags=re.M))
    load_settings(values)


def test_env_example_shows_the_settings_by_section() -> None:
    # Each section of Settings is a "## title" line, a "## about" line, then its variables in declaration order.
    shown: list[tuple[str, str, list[str]]] = []
    lines = (ROOT / ".env.example").read_text().splitlines()
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith("## ") and following.startswith("## "):
            shown.append((line[3:], following[3:], []))
        elif match := re.match(r"^(LLM_[A-Z0-9_]+)=", line):
            shown[-1][2].append(match.group(1))
    wanted = [(s.title, s.about, [env_name(f) for f in s.fields]) for s in SECTIONS]
    assert shown == wanted


def test_every_setting_belongs_to_one_section() -> None:
    assert [f for s in SECTIONS for f in s.fields] == list(Settings.__struct_fields__)
    assert section_of("max_tokens_limit").title == "Request defaults and limits"


def test_the_docs_settings_table_is_written_from_the_settings() -> None:
    # docs/configuration.md's table of every setting: `python scripts/docs_config_table.py` rewrites it.
    done = subprocess.run(
        [sys.executable, "scripts/docs_config_table.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_bad_config_stops_start_up_with_exit_code_2() -> None:
    result = run_cli("serve", {"LLM_INFERENCE_PORT": "abc", "LLM_DEFAULT_TOP_P": "7"})
    assert result.returncode == 2
    assert "LLM_INFERENCE_PORT='abc' is invalid: expected an integer" in result.stderr
    assert "LLM_DEFAULT_TOP_P='7' is invalid" in result.stderr


def test_a_bad_otel_batch_setting_stops_start_up_with_exit_code_2() -> None:
    # The OpenTelemetry SDK would only fail in the server's worker, with a traceback. (A value that is not a
    # number at all is the SDK's own business: it logs that and uses its default.)
    result = run_cli("serve", {"OTEL_BSP_MAX_QUEUE_SIZE": "-5"})
    assert result.returncode == 2
    rule = "is invalid: expected positive integers with OTEL_BSP_MAX_EXPORT_BATCH_SIZE <= OTEL_BSP_MAX_QUEUE_SIZE"
    assert f"OTEL_BSP_MAX_QUEUE_SIZE='-5' {rule}" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("check-config", {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"})
    assert result.returncode == 2
    assert rule in result.stderr and "OTEL_BSP_MAX_EXPORT_BATCH_SIZE='20'" in result.stderr
    assert run_cli("check-config", {"OTEL_BSP_MAX_QUEUE_SIZE": "4096"}).returncode == 0


def test_check_config_prints_effective_settings() -> None:
    result = run_cli("check-config", {"LLM_INFERENCE_PORT": "9001", "LLM_LOG_FORMAT": "pretty"})
    assert result.returncode == 0, result.stderr
    assert '"LLM_INFERENCE_PORT": 9001' in result.stdout


def test_the_seed_systems_variable_names_earn_a_warning_naming_the_replacement() -> None:
    _, warnings = load_settings(
        {
            "SERVER_SSL_ENABLED": "true",
            "TLS_SERVER_CERT_PATH": "/tls/cert.pem",
            "CORS_ALLOWED_ORIGINS": "*",
            "LLM_LOG_FORMAT": "json",
        }
    )
    assert warnings == [
        "CORS_ALLOWED_ORIGINS is not read by this service and is ignored; set LLM_CORS_ALLOWED_ORIGINS instead",
        "SERVER_SSL_ENABLED is not read by this service and is ignored; set LLM_TLS_ENABLED instead",
        "TLS_SERVER_CERT_PATH is not read by this service and is ignored; set LLM_TLS_CERT_PATH instead",
    ]
    result = run_cli("check-config", {"LOG_FORMAT": "pretty", "SERVICE_NAME": "chat"})
    assert result.returncode == 0, result.stderr
    assert "LOG_FORMAT is not read by this service and is ignored; set LLM_LOG_FORMAT instead" in result.stderr
    assert "SERVICE_NAME is not read by this service and is ignored; set LLM_SERVICE_NAME instead" in result.stderr


def test_vllm_models_split_the_gpu_and_shares_that_overflow_it_stop_start_up() -> None:
    two = {"LLM_ALLOWED_MODELS": "org/a,org/b,smollm2-135m-instruct", "LLM_GPU_MEMORY_UTILIZATION": "0.8"}
    settings, _ = load_settings(two)
    # The GGUF model runs on llama.cpp and takes no share; the two vLLM models split the 0.8 equally.
    assert (
        vllm_config(settings, "org/a").gpu_memory_utilization == vllm_config(settings, "org/b").gpu_memory_utilization
    )
    assert gpu_memory_share(settings, "org/a") == 0.4
    settings, _ = load_settings({**two, "LLM_GPU_MEMORY_SHARES": "org/a=0.6,org/b=0.2"})
    assert (vllm_config(settings, "org/a").gpu_memory_utilization, gpu_memory_share(settings, "org/b")) == (0.6, 0.2)
    # One vLLM model at a time (LLM_MAX_LOADED_MODELS=1): each may have the whole 0.8.
    settings, _ = load_settings({**two, "LLM_MAX_LOADED_MODELS": "1", "LLM_GPU_MEMORY_SHARES": "org/a=0.8,org/b=0.8"})
    assert gpu_memory_share(settings, "org/b") == 0.8

    with pytest.raises(SettingsError) as raised:
        load_settings({**two, "LLM_GPU_MEMORY_SHARES": "org/a=0.6,org/b=0.5"})
    (line,) = raised.value.lines
    assert line.startswith("LLM_GPU_MEMORY_SHARES='org/a=0.6,org/b=0.5' is invalid")
    assert "LLM_GPU_MEMORY_UTILIZATION=0.8" in line and "sum to 1.1" in line
    for shares, rule in [
        ("org/c=0.1", "naming models of LLM_ALLOWED_MODELS"),
        ("smollm2-135m-instruct=0.1", "GGUF file"),
        ("org/a=1.5", "fractions > 0 and <= 1"),
        ("org/a", "model=fraction pairs"),
    ]:
        with pytest.raises(SettingsError, match=rule):
            load_settings({**two, "LLM_GPU_MEMORY_SHARES": shares})
