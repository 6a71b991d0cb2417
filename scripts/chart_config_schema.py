"""Regenerate the `config` part of helm/llm-inference/values.schema.json from Settings, the service's own rules.

    python scripts/chart_config_schema.py          # rewrite the schema's `config`
    python scripts/chart_config_schema.py --check  # exit 1 if it is out of date (tests/helm run this)

Each LLM_* setting gets its type, bounds and allowed values, so `helm install` rejects what start-up would; the
properties follow the settings' sections (settings.SECTIONS), and each one's description names its section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from llm_inference.settings import Settings, env_name, section_of

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "helm" / "llm-inference" / "values.schema.json"

# Settings the chart derives from its own values, so they are not in `config`.
CHART_MANAGED = {
    "LLM_INFERENCE_HOSTNAME",  # all interfaces: the kubelet probes the pod IP
    "LLM_INFERENCE_PORT",  # containerPort
    "LLM_TLS_ENABLED",  # tls.enabled
    "LLM_TLS_CERT_PATH",  # the mounted tls.secretName
    "LLM_TLS_KEY_PATH",
    "LLM_API_KEYS_FILE",  # apiKeysFile
    "LLM_TOOL_DISPATCH_KEY_FILE",  # toolDispatchKeyFile
    "LLM_STATE_URL",  # state.url, state.existingSecret or state.valkey
    "LLM_STATE_PASSWORD_FILE",  # state.passwordSecret
    "LLM_STATE_TLS_CA_FILE",  # state.tlsCaSecret
}


# Secret settings come from the chart's Secret (`secret`), never its ConfigMap.
SECRET_SETTINGS = {"LLM_API_KEYS"}


def config_fields() -> list[str]:
    return [f for f in Settings.__struct_fields__ if env_name(f) not in CHART_MANAGED | SECRET_SETTINGS]


def _value_schema(field_schema: dict[str, Any]) -> dict[str, Any]:
    """A value in values.yaml: the setting's own schema; lists may also be one comma-separated string."""
    schema = {k: v for k, v in field_schema.items() if k not in ("default", "title", "description")}
    if "anyOf" in schema:
        return {"anyOf": [_value_schema(option) for option in schema["anyOf"]]}
    if schema.get("type") == "array":
        return {"anyOf": [{"type": "string"}, schema]}
    return schema


def config_schema() -> dict[str, Any]:
    settings_schema = msgspec.json.schema(Settings)["$defs"]["Settings"]["properties"]
    return {
        "type": "object",
        "description": "LLM_* settings rendered into the ConfigMap; null leaves the service's default",
        "additionalProperties": False,
        "properties": {
            env_name(f): {"description": f"{section_of(f).title} settings", **_value_schema(settings_schema[f])}
            for f in config_fields()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the schema's config is out of date")
    args = parser.parse_args()
    schema = json.loads(SCHEMA_PATH.read_text())
    wanted = config_schema()
    if args.check:
        if schema["properties"]["config"] != wanted:
            print(f"{SCHEMA_PATH}: `config` is out of date; run python {sys.argv[0]}", file=sys.stderr)
            raise SystemExit(1)
        return
    schema["properties"]["config"] = wanted
    SCHEMA_PATH.write_text(json.dumps(schema, indent=2) + "\n")


if __name__ == "__main__":
    main()
