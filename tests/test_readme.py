"""Every shell example of README.md that talks to the service runs, exactly as written, against a real server.

The examples are read from the README itself, so the documentation and the service cannot drift apart: each
```sh block that calls localhost:8091 runs in bash against a Granian process started with `make run`'s
settings (only the port differs), every curl must get a 2xx answer, and where the README shows an answer under
a command, the real answer must have the same shape (the same fields, nested alike) and the same `type`,
`finish_reason`, `param` and `model` values.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.server import ServerProcess

README = Path(__file__).resolve().parent.parent / "README.md"
ADDRESS = "localhost:8091"
SEPARATOR = "@@README-COMMAND-END@@"
# Values that do not depend on the model's wording, so the README's answer and the real one must agree on them;
# and, where the example samples greedily (temperature 0, so its answer is always the same), why it ended.
EXACT_FIELDS = {"type", "param", "model", "object"}
GREEDY_EXACT_FIELDS = EXACT_FIELDS | {"finish_reason"}


@dataclass
class Command:
    text: str
    shown_answer: list[str] = field(default_factory=list)  # the README's lines under the command, if any


@dataclass
class Example:
    line: int  # where the block starts in README.md
    commands: list[Command]

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def read_examples(text: str) -> list[Example]:
    """The ```sh blocks that call the service, each split into its commands and the answers shown under them."""
    examples = []
    for block in re.finditer(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        body = block.group(1)
        if ADDRESS not in body:
            continue
        commands: list[Command] = []
        continued = False
        for line in body.splitlines():
            if line.lstrip().startswith("{") and not continued and commands:
                commands[-1].shown_answer.append(line)
            elif continued:
                commands[-1].text += "\n" + line
            elif line.strip():
                commands.append(Command(line))
            continued = line.endswith("\\")
        examples.append(Example(text[: block.start()].count("\n") + 1, commands))
    return examples


EXAMPLES = read_examples(README.read_text())


def shape_difference(
    shown: Any, real: Any, where: str = "$", exact: frozenset[str] = frozenset(EXACT_FIELDS)
) -> str | None:
    """Where the real answer differs from the README's in shape or in an `exact` field's value, or None."""
    if isinstance(shown, dict):
        if not isinstance(real, dict) or set(shown) != set(real):
            return f"{where}: README shows keys {sorted(shown)}, the service answered {real!r:.300}"
        for key, value in shown.items():
            if key in exact and not isinstance(value, dict | list) and value != real[key]:
                return f"{where}.{key}: README shows {value!r}, the service answered {real[key]!r}"
            if found := shape_difference(value, real[key], f"{where}.{key}", exact):
                return found
        return None
    if isinstance(shown, list):
        if not isinstance(real, list) or len(shown) != len(real):
            return f"{where}: README shows {len(shown)} items, the service answered {real!r:.300}"
        return next(
            (
                d
                for i, (a, b) in enumerate(zip(shown, real, strict=True))
                if (d := shape_difference(a, b, f"{where}[{i}]", exact))
            ),
            None,
        )
    if type(shown) is not type(real) and not (isinstance(shown, int | float) and isinstance(real, int | float)):
        return f"{where}: README shows {shown!r}, the service answered {real!r}"
    return None


def test_the_readme_has_the_quick_start_examples() -> None:
    # A README edit that dropped every example would make the test below check nothing.
    assert len(EXAMPLES) >= 7, [e.name for e in EXAMPLES]
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(read_examples(quick_start)) == 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("readme") / "server.log"
    process = ServerProcess(log_path=log)
    process.env.pop("LLM_CONTEXT_LENGTH")  # the model's own context, as `make run` serves it
    with process:
        process.wait_for("/health/ready", 200, timeout=300)
        yield process


@pytest.mark.model
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_readme_example_works_as_written(server: ServerProcess, example: Example) -> None:
    # Every curl fails on an HTTP error status; the output of each command ends with a separator line.
    script = 'set -eu\ncurl() { command curl --fail-with-body "$@"; }\n'
    for command in example.commands:
        script += command.text.replace(ADDRESS, f"127.0.0.1:{server.port}") + f"\necho; echo {SEPARATOR}\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example.name} failed ({done.returncode}):\n{script}\n{done.stdout}\n{done.stderr}"
    outputs = done.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == len(example.commands) + 1, done.stdout
    for command, output in zip(example.commands, outputs, strict=False):
        if command.text.lstrip().startswith("curl"):
            assert output.strip(), f"{example.name}: `{command.text}` printed nothing"
        if "-sN" in command.text:  # a stream: Server-Sent Events, each a JSON object, then the end
            events = [line.removeprefix("data: ") for line in output.splitlines() if line.startswith("data: ")]
            assert events, f"{example.name}: `{command.text}` streamed no events: {output!r:.500}"
            for event in events:
                assert event == "[DONE]" or isinstance(json.loads(event), dict), event
        if command.shown_answer:
            shown = json.loads("".join(command.shown_answer))
            real = json.loads(output)
            greedy = '"temperature": 0,' in command.text or '"temperature": 0}' in command.text
            difference = shape_difference(shown, real, exact=frozenset(GREEDY_EXACT_FIELDS if greedy else EXACT_FIELDS))
            assert difference is None, f"{example.name}: `{command.text}`: {difference}"
