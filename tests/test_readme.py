"""Every example of the documentation that talks to the service runs, exactly as written, against a real server.

The examples are read from README.md and every page under docs/, so the documentation and the service cannot
drift apart. One Granian process, started with `make run`'s settings (only the port differs), serves them all:

- each ```sh block that calls localhost:8091 runs in bash; every curl must get a 2xx answer, and where the page
  shows an answer under a command, the real answer must have the same shape (the same fields, nested alike) and
  the same `type`, `finish_reason` (when greedy), `param`, `model` and `object` values;
- each page's ```python blocks run in order in one Python process, as a reader would paste them, with the
  openai SDK's `client` made first (as docs/openai.md makes it) and pointed at the server;
- the WebSocket exchange of docs/api.md is played: each `→` message sent, the `←` events compared in kind and
  shape;
- every other fenced block must be named in NOT_RUN with the reason it does not run here (and what checks it
  instead), so that a new example cannot go untested unnoticed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
ADDRESS = "localhost:8091"
SEPARATOR = "@@README-COMMAND-END@@"
# Values that do not depend on the model's wording, so the page's answer and the real one must agree on them;
# and, where the example samples greedily (temperature 0, so its answer is always the same), why it ended.
EXACT_FIELDS = {"type", "param", "model", "object"}
GREEDY_EXACT_FIELDS = EXACT_FIELDS | {"finish_reason"}
# In a shown answer, `{...}` stands for any object (an answer's usage or timings, whose values vary).
ANY = "<any object>"
# What a python block may use before it makes its own: the client docs/openai.md makes.
PYTHON_PREAMBLE = (
    'from openai import OpenAI\n\nclient = OpenAI(base_url="http://localhost:8091/v1", api_key="unused")\n'
)

# Fenced blocks that are not run here, by page and the start of their first line, and why; what checks them.
NOT_RUN = {
    ("docs/embedding.md", "from litestar import Litestar, get"): (
        "a host application, not a client of the server: tests/api/test_embedding.py runs this block as the host "
        "it tests"
    ),
    ("docs/embedding.md", "location /llm/"): (
        "nginx configuration; tests/test_base_path_server.py serves what it forwards (LLM_BASE_PATH=/llm)"
    ),
    ("README.md", "make run"): "make itself: CI runs `make test`, and the server of this test is `make run`'s",
    ("docs/architecture.md", "Granian worker"): "a diagram of the layers, not a command",
    ("docs/api.md", '{"error": {"type": "context_length_exceeded"'): (
        "an answer of a server with a 1,024-token context; tests/api/test_context_pruning.py gets it"
    ),
    ("docs/hardening.md", '{"error": {"type": "invalid_parameter"'): (
        "an answer; tests/api/test_errors.py sends bodies with several invalid fields and checks it"
    ),
    ("docs/kubernetes.md", "helm install"): (
        "needs a cluster; tests/deploy renders and lints the chart offline, and tests/deploy/test_chart_probes.py "
        "runs the `helm test` script against the service"
    ),
    ("docs/kubernetes.md", "rules:"): "tests/deploy/test_docs_values.py: the chart's own prometheusAdapter.rules",
    ("docs/kubernetes.md", "autoscaling:"): "values: tests/deploy/test_docs_values.py renders the chart with them",
    ("docs/kubernetes.md", "gpu: {enabled: true, count: 8}"): (
        "values: tests/deploy/test_docs_values.py renders the chart with them"
    ),
    ("docs/kubernetes.md", "--pool-name="): (
        "the endpoint picker's flags; tests/deploy/test_chart_scaling.py checks /metrics has every gauge they name"
    ),
    ("docs/many-replicas.md", "LLM_STATE_URL=redis://"): (
        "settings for a server elsewhere; tests/state/test_store.py loads each kind (URL, password file, CA file) "
        "against a real server, and tests/state/test_replicas.py serves with them"
    ),
    ("docs/many-replicas.md", "helm install llm helm/llm-inference --set state.valkey"): (
        "needs a cluster; tests/deploy/test_chart.py renders the chart with each kind of `state` values"
    ),
    ("docs/observability.md", "--total-queued-requests-metric="): (
        "the endpoint picker's flags; tests/deploy/test_chart_scaling.py checks /metrics has every gauge they name"
    ),
    ("docs/observability.md", "helm template llm"): (
        "needs helm's binary and yq; tests/deploy/test_alerts.py renders the same rules and runs promtool on them"
    ),
    ("docs/structured-outputs.md", '{"error": {"type": "unsupported_parameter"'): (
        "an answer; tests/api/test_structured.py sends schemas with refused keywords"
    ),
    ("docs/tool-calling.md", "POST $LLM_TOOL_DISPATCH_URL"): (
        "what the service sends a tool server; tests/api/test_tool_rounds.py runs rounds against a real one"
    ),
    ("docs/tool-calling.md", '{"model": "smollm2-135m-instruct", "messages"'): (
        "needs LLM_TOOL_DISPATCH_URL and a tool server; tests/api/test_tool_rounds.py sends such requests"
    ),
    ("docs/tool-calling.md", '"tool_rounds": [{"calls"'): "a part of an answer; tests/api/test_tool_rounds.py",
}


@dataclass
class Block:
    page: Path
    line: int  # where the fence opens
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.text.lstrip().split("\n", 1)[0]


def read_blocks(page: Path, text: str | None = None) -> list[Block]:
    text = page.read_text() if text is None else text
    return [
        Block(page, text[: block.start()].count("\n") + 1, block.group(1), block.group(2))
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)
    ]


def is_shell_example(block: Block) -> bool:
    return block.language == "sh" and ADDRESS in block.text


def is_socket_exchange(block: Block) -> bool:
    return block.text.startswith("→ ")


@dataclass
class Command:
    text: str
    shown_answer: list[str] = field(default_factory=list)  # the page's lines under the command, if any


@dataclass
class Example:
    block: Block
    commands: list[Command]

    @property
    def name(self) -> str:
        return self.block.name


def commands_of(block: Block) -> list[Command]:
    """A ```sh block split into its commands and the answers shown under them."""
    commands: list[Command] = []
    continued = False
    for line in block.text.splitlines():
        if line.lstrip().startswith("{") and not continued and commands:
            commands[-1].shown_answer.append(line)
        elif continued:
            commands[-1].text += "\n" + line
        elif line.strip():
            commands.append(Command(line))
        continued = line.endswith("\\")
    return commands


def read_examples(page: Path, text: str | None = None) -> list[Example]:
    return [Example(b, commands_of(b)) for b in read_blocks(page, text) if is_shell_example(b)]


BLOCKS = [block for page in PAGES for block in read_blocks(page)]
EXAMPLES = [example for page in PAGES for example in read_examples(page)]
SOCKET_EXCHANGES = [b for b in BLOCKS if is_socket_exchange(b)]


def reason_not_run(block: Block) -> str | None:
    page = str(block.page.relative_to(ROOT))
    return next((why for (p, start), why in NOT_RUN.items() if p == page and block.first_line.startswith(start)), None)


def is_client_python(block: Block) -> bool:
    return block.language == "python" and not reason_not_run(block)


PYTHON_PAGES = sorted({b.page for b in BLOCKS if is_client_python(b)})


def shape_difference(
    shown: Any, real: Any, where: str = "$", exact: frozenset[str] = frozenset(EXACT_FIELDS)
) -> str | None:
    """Where the real answer differs from the page's in shape or in an `exact` field's value, or None."""
    if shown == ANY:
        return None if isinstance(real, dict) else f"{where}: the page shows an object, the service answered {real!r}"
    if isinstance(shown, dict):
        if not isinstance(real, dict) or set(shown) != set(real):
            return f"{where}: the page shows keys {sorted(shown)}, the service answered {real!r:.300}"
        for key, value in shown.items():
            if key in exact and not isinstance(value, dict | list) and value != real[key]:
                return f"{where}.{key}: the page shows {value!r}, the service answered {real[key]!r}"
            if found := shape_difference(value, real[key], f"{where}.{key}", exact):
                return found
        return None
    if isinstance(shown, list):
        if not isinstance(real, list) or len(shown) != len(real):
            return f"{where}: the page shows {len(shown)} items, the service answered {real!r:.300}"
        return next(
            (
                d
                for i, (a, b) in enumerate(zip(shown, real, strict=True))
                if (d := shape_difference(a, b, f"{where}[{i}]", exact))
            ),
            None,
        )
    if type(shown) is not type(real) and not (isinstance(shown, int | float) and isinstance(real, int | float)):
        return f"{where}: the page shows {shown!r}, the service answered {real!r}"
    return None


def shown_json(text: str) -> Any:
    return json.loads(text.replace("{...}", json.dumps(ANY)))


def test_the_pages_have_their_examples() -> None:
    # A page edit that dropped every example would make the tests below check nothing.
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert len(read_examples(README, quick_start)) == 3
    by_page = {page.name: len([e for e in EXAMPLES if e.block.page == page]) for page in PAGES}
    assert sum(by_page.values()) >= 11, by_page
    assert by_page["api.md"] >= 4 and by_page["openai.md"] >= 2, by_page
    assert [p.name for p in PYTHON_PAGES] == ["openai.md", "tool-calling.md"]
    assert len(SOCKET_EXCHANGES) == 1


def test_the_api_page_links_the_live_swagger_ui_and_openapi_document() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    assert "(http://localhost:8091/swagger-ui)" in api and "(http://localhost:8091/openapi.json)" in api
    # and the page's examples fetch both (run below)
    fetched = " ".join(c.text for e in EXAMPLES if e.block.page.name == "api.md" for c in e.commands)
    assert f"{ADDRESS}/openapi.json" in fetched and f"{ADDRESS}/swagger-ui" in fetched


def test_every_block_runs_here_or_says_why_not() -> None:
    unexplained = [
        f"{b.name} ({b.first_line[:60]})"
        for b in BLOCKS
        if not (is_shell_example(b) or b.language == "python" or is_socket_exchange(b) or reason_not_run(b))
    ]
    assert not unexplained, f"run these here, or say in NOT_RUN why not: {unexplained}"
    unused = [
        (p, s) for p, s in NOT_RUN if not any(b.name.startswith(p + ":") and b.first_line.startswith(s) for b in BLOCKS)
    ]
    assert not unused, f"NOT_RUN names blocks no page has: {unused}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("docs") / "server.log"
    process = ServerProcess(log_path=log)
    process.env.pop("LLM_CONTEXT_LENGTH")  # the model's own context, as `make run` serves it
    with process:
        process.wait_for("/health/ready", 200, timeout=300)
        yield process


@pytest.mark.model
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_shell_example_works_as_written(server: ServerProcess, example: Example) -> None:
    # Every curl fails on an HTTP error status; the output of each command ends with a separator line.
    script = 'set -eu -o pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
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
            shown = shown_json("".join(command.shown_answer))
            real = json.loads(output)
            greedy = '"temperature": 0,' in command.text or '"temperature": 0}' in command.text
            difference = shape_difference(shown, real, exact=frozenset(GREEDY_EXACT_FIELDS if greedy else EXACT_FIELDS))
            assert difference is None, f"{example.name}: `{command.text}`: {difference}"


@pytest.mark.model
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[str(p.relative_to(ROOT)) for p in PYTHON_PAGES])
def test_the_python_examples_work_as_written(server: ServerProcess, page: Path) -> None:
    blocks = [b for b in read_blocks(page) if is_client_python(b)]
    script = PYTHON_PREAMBLE + "".join(f"\nprint('@@ {b.name}', flush=True)\n{b.text}" for b in blocks)
    script = script.replace(ADDRESS, f"127.0.0.1:{server.port}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{page.name}'s python failed (the last @@ line names the block):\n{done.stdout}\n{done.stderr}"
    )
    for block in blocks:
        printed = done.stdout.split(f"@@ {block.name}\n", 1)[1].split("@@ ", 1)[0]
        assert printed.strip(), f"{block.name} printed nothing"


@pytest.mark.model
@pytest.mark.parametrize("block", SOCKET_EXCHANGES, ids=[b.name for b in SOCKET_EXCHANGES])
def test_the_websocket_exchange_goes_as_shown(server: ServerProcess, block: Block) -> None:
    exchanges: list[tuple[str, list[Any]]] = []
    for line in block.text.splitlines():
        if line.startswith("→ "):
            exchanges.append((line.removeprefix("→ "), []))
        elif line.startswith("← "):
            exchanges[-1][1].append(shown_json(line.removeprefix("← ")))
    assert exchanges, block.text
    with connect(f"ws://127.0.0.1:{server.port}/api/chat/ws") as socket:
        for sent, shown in exchanges:
            socket.send(sent)
            real = [json.loads(socket.recv(timeout=120))]
            while real[-1]["type"] not in ("done", "error"):
                real.append(json.loads(socket.recv(timeout=120)))
            # The deltas shown are examples of the model's pieces of text: any number of them may come.
            kinds = [event["type"] for event in real]
            shown_kinds = [event["type"] for event in shown]
            assert kinds[-1] == shown_kinds[-1] and set(kinds[:-1]) <= set(shown_kinds[:-1]), (sent, real)
            for event in [*[e for e in real if e["type"] == "delta"][:1], real[-1]]:
                model = next(e for e in shown if e["type"] == event["type"])
                difference = shape_difference(model, event)
                assert difference is None, f"{block.name}: after `{sent}`: {difference}"
