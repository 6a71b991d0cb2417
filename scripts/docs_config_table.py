"""Regenerate the tables of every setting in docs/configuration.md from Settings, the service's own definition.

    python scripts/docs_config_table.py          # rewrite the table
    python scripts/docs_config_table.py --check  # exit 1 if it is out of date (`make docs` and tests/test_settings.py)

One table per concern (settings.SECTIONS, the groups .env.example shows too). Names, defaults and what each
variable accepts come from Settings (the accepted values in the words start-up's
error messages use); what a setting does comes from the field's own description when Settings gives one, else
from the comment above the variable in .env.example (which tests/test_settings.py keeps in step with Settings).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from llm_inference.settings import SECTIONS, Settings, accepts, env_name

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
BEGIN = "<!-- BEGIN settings table: written by scripts/docs_config_table.py from Settings and .env.example -->"
END = "<!-- END settings table -->"


def env_example_comments(text: str) -> dict[str, str]:
    """Each variable's comment in .env.example: the comment lines above it, or above the group it opens."""
    comments: dict[str, str] = {}
    block: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.startswith("##"):  # a section's heading, not a variable's comment
            continue
        if line.startswith("#"):
            block.append(line.lstrip("#").strip())
        elif match := re.match(r"^(LLM_[A-Z0-9_]+)=", line):
            if block:
                current, block = " ".join(block), []
            comments[match.group(1)] = current
        else:
            block, current = [], ""
    return comments


def shown_default(value: Any) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def cell(text: str) -> str:
    """Markdown table cell: variable names as code, the docs' own pages as links, no stray HTML or pipes."""
    text = re.sub(r'docs/([\w-]+\.md)(?: "([^"]+)")?', lambda m: f"[{m[2] or m[0]}]({m[1]})", text)
    text = re.sub(r"(?<![`\w${])((?:LLM|HF|OTEL)_[A-Z0-9_]+(?:=\w+)?)", r"`\1`", text)
    return text.replace("<", "&lt;").replace("|", "\\|")


def table() -> str:
    comments = env_example_comments(ENV_EXAMPLE.read_text())
    properties = msgspec.json.schema(Settings)["$defs"]["Settings"]["properties"]
    fields = {field.name: field for field in msgspec.structs.fields(Settings)}
    parts = []
    for section in SECTIONS:
        rows = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
        previous = None
        for name in section.fields:
            variable = env_name(name)
            what = properties[name].get("description") or comments.get(variable, "")
            shown = "as above" if what and what == previous else cell(what)
            previous = what
            default = shown_default(fields[name].default)
            rows.append(f"| `{variable}` | {default} | {cell(accepts(name))} | {shown} |")
        parts.append(f"### {section.title}\n\n{cell(section.about)}\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def with_table(page: str) -> str:
    before, found, rest = page.partition(BEGIN)
    _, found_end, after = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{PAGE}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{before}{BEGIN}\n{table()}\n{END}{after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    args = parser.parse_args()
    page = PAGE.read_text()
    wanted = with_table(page)
    if args.check:
        if page != wanted:
            print(f"{PAGE}: the settings table is out of date; run python {sys.argv[0]}", file=sys.stderr)
            raise SystemExit(1)
        return
    PAGE.write_text(wanted)


if __name__ == "__main__":
    main()
