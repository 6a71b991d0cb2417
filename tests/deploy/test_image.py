"""The CPU image itself: Dockerfile built by podman as `docker build` builds it, then run as a cluster runs it.

`make image-test` runs this (LLM_TEST_IMAGE=1; it is skipped otherwise, since the build takes minutes). It
installs Debian's podman, buildah and debootstrap (scripts/oci/install-tools.sh), makes a stand-in for the
Dockerfile's base image from Debian's archive (scripts/oci/base-image.sh: no container registry is reachable
here), builds the unchanged Dockerfile with `podman build --isolation chroot --pull=never --network host`, and
starts the image with `podman run` under the chart's security context (its own user, a read-only root, only
/tmp, /home/app and HF_HOME writable, no capabilities). The checks talk to the container over HTTP and a
browser, read its processes from /proc and its writes from `podman diff`. docs/kubernetes.md "Images" says what this does
not exercise; Dockerfile.cuda keeps its script-level tests in tests/test_images.py.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.sse import parse_events
from tests.deploy.chart import CHART, load_values
from tests.polling import wait_until
from tests.server import free_port
from tests.test_images import IMAGES, final_stage, image_env, instructions
from tests.ui.conftest import browser  # noqa: F401  # the Chromium fixture, shared with tests/ui
from tests.ui.test_playground import Page, ask

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        os.environ.get("LLM_TEST_IMAGE") != "1",
        reason="builds and runs the image (minutes): `make image-test` runs it (LLM_TEST_IMAGE=1)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "image-test"  # build logs, container logs, report.json
TAG = "localhost/llm-inference:image-test"
WRITABLE = ("/tmp", "/home/app", "/var/cache/huggingface")  # the chart's writable mounts (_helpers.tpl)
APP_ID = 10001  # the image's USER, the chart's runAsUser/runAsGroup
BUILD_TIMEOUT = 3600  # seconds; about 10 minutes on two idle cores, llama.cpp's compilation most of it
READY_TIMEOUT = 180  # seconds from `podman run` to /health/ready 200 (about 5 s on an idle machine)
# SmolLM2 keeps counting past any max_tokens used here, so the stream runs exactly this many tokens.
COUNTING = "Count from 1 to 200: 1, 2,"
DRAINED_TOKENS = 64
# A grace period longer than the drained stream may take on a loaded machine (the chart's default is 30 s).
GRACE_SECONDS = 300


def canonical_image_name(name: str) -> str:
    """The fully qualified name docker and podman resolve a short image name to (docker.io/library/...)."""
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def base_image(dockerfile: Path) -> str:
    """The default of the Dockerfile's base image argument (PYTHON_IMAGE, CUDA_IMAGE), fully qualified."""
    args = next(a for op, a in instructions(dockerfile) if op == "ARG" and re.match(r"^[A-Z]+_IMAGE=", a))
    return canonical_image_name(args.split("=", 1)[1])


def run(command: list[str], timeout: float, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run to its end; output captured (or written to `log` as it comes, and read back)."""
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=ROOT)
    return subprocess.CompletedProcess(done.args, done.returncode, log.read_text(errors="replace"), "")


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def report(key: str, value: object) -> None:
    """One figure of the run, printed (make image-test runs pytest with -s) and kept in OUT/report.json."""
    path = OUT / "report.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[key] = value
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nimage-test: {key}: {value}")


@dataclass
class Runtime:
    """The OCI runtime podman starts containers with, and the options this machine needs for any container."""

    name: str
    options: list[str]

    def podman(self, *args: str) -> list[str]:
        return ["podman", "--runtime", self.name, *args]


def rlimit_options() -> list[str]:
    """podman's defaults for root (RLIMIT_NOFILE 1048576, RLIMIT_NPROC 4194304) are above this sandbox's hard
    limits, and without CAP_SYS_RESOURCE the runtime may not raise them ("setrlimit: Operation not permitted";
    `--ulimit host` fails the same way in podman 4.3): the container gets this process's open-file limit."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def step_images(build_log: str) -> dict[str, str]:
    """Each step of a podman build (its line in the log: "[1/2] STEP 7/8: COPY . .") and the short ID of the image
    it made."""
    steps, step = {}, ""
    for line in build_log.splitlines():
        if re.match(r"^\[\d+/\d+\] STEP \d+/\d+: ", line):
            step = line
        elif (match := re.match(r"^--> ([0-9a-f]{6,})$", line)) and step:
            steps[step] = match[1]
    return steps


def remove_older_builds(keep: set[str]) -> int:
    """Remove the images earlier builds left untagged (each build leaves its stages' images: gigabytes a run), but
    not this build's own, which are the layer cache of the next build of the same context."""
    removed = 0
    while True:
        listed = run(["podman", "images", "--quiet", "--no-trunc", "--filter", "dangling=true"], timeout=60)
        ids = [i.removeprefix("sha256:") for i in listed.stdout.split()]
        older = [i for i in ids if not any(i.startswith(short) for short in keep)]
        if not older or run(["podman", "rmi", *older], timeout=300).returncode != 0:
            return removed
        removed += len(older)


@pytest.fixture(scope="module")
def image() -> str:
    """The base stand-in made (or kept), then Dockerfile built into TAG; the image's figures reported."""
    for tool in ("podman", "buildah", "debootstrap"):
        assert shutil.which(tool), f"{tool} is missing: `make image-test` installs it (scripts/oci/install-tools.sh)"
    base = base_image(IMAGES["Dockerfile"])
    made = run(["scripts/oci/base-image.sh", base], timeout=1200)
    assert made.returncode == 0, made.stdout + made.stderr
    print("\n" + made.stdout.strip())

    started = time.monotonic()
    build = [
        *("podman", "build", "--isolation", "chroot", "--pull=never", "--network", "host"),
        *("--file", "Dockerfile", "--tag", TAG, "."),
    ]
    print(f"image-test: {shlex.join(build)} (output in {OUT / 'Dockerfile.build.log'})", flush=True)
    built = run(build, timeout=BUILD_TIMEOUT, log=OUT / "Dockerfile.build.log")
    assert built.returncode == 0, f"podman build failed:\n{tail(built.stdout, 60)}"
    report("build seconds", round(time.monotonic() - started))
    cached = built.stdout.count("--> Using cache")
    report("build steps taken from podman's layer cache", cached)

    inspected = json.loads(run(["podman", "image", "inspect", TAG], timeout=60).stdout)[0]
    base_layers = json.loads(run(["podman", "image", "inspect", base], timeout=60).stdout)[0]["RootFS"]["Layers"]
    report("image size MB", round(inspected["Size"] / 1e6))
    report("image layers", f"{len(inspected['RootFS']['Layers'])} ({len(base_layers)} of them the base's)")
    # The build context (what .dockerignore lets through): the size of the build stage's `COPY . .` layer.
    steps = step_images(built.stdout)
    copied = next(image for step, image in steps.items() if step.endswith(": COPY . ."))
    copy = json.loads(run(["podman", "history", "--format", "json", copied], timeout=60).stdout)[0]
    report("build context MB (the COPY . . layer)", round(copy["size"] / 1e6, 1))
    report("older build images removed", remove_older_builds(set(steps.values())))
    return TAG


@pytest.fixture(scope="module")
def runtime(image: str) -> Runtime:
    """The first runtime that starts a container of the image: crun (podman's default), then runc. crun refuses
    a cgroup v1 host that also mounts cgroup v2 ("cgroups in hybrid mode not supported"), even with
    --cgroups=disabled; runc does not mind."""
    options = rlimit_options()
    rejected: dict[str, str] = {}
    for name, extra in (("crun", []), ("crun", ["--cgroups=disabled"]), ("runc", [])):
        tried = Runtime(name, options + extra)
        started = run(tried.podman("run", "--rm", *tried.options, image, "true"), timeout=120)
        if started.returncode == 0:
            report("runtime", f"podman run with {name} {' '.join(extra)}".strip())
            for label, reason in rejected.items():
                report(f"runtime not used: {label}", reason)
            return tried
        rejected[f"{name} {' '.join(extra)}".strip()] = started.stderr.strip().splitlines()[-1]
    pytest.fail(f"no runtime could start a container here: {rejected}")


class Container:
    """One `podman run` of the image as the chart runs it, serving on 127.0.0.1:port of the host's network."""

    def __init__(self, runtime: Runtime, image: str, name: str, read_only: bool, env: dict[str, str]) -> None:
        self.runtime, self.image, self.name = runtime, image, f"llm-inference-image-test-{name}-{os.getpid()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = OUT / f"{name}.container.log"
        # The chart's writable volumes (emptyDir, group-writable through fsGroup 10001), as host directories, so
        # what the service wrote there can be listed after it stopped.
        self.writable = {path: OUT / "volumes" / name / path.strip("/").replace("/", "-") for path in WRITABLE}
        assert image_env(IMAGES["Dockerfile"])["HF_HOME"] in self.writable
        options = [*runtime.options, "--name", self.name, "--network", "host"]
        # The chart's securityContext: no capabilities, no privilege escalation, a read-only root filesystem.
        options += ["--cap-drop", "all", "--security-opt", "no-new-privileges"]
        if read_only:
            options += ["--read-only", "--read-only-tmpfs=false"]
        for inside, host in self.writable.items():
            shutil.rmtree(host, ignore_errors=True)
            host.mkdir(parents=True)
            os.chown(host, APP_ID, APP_ID)
            options += ["--volume", f"{host}:{inside}"]
        # On the host's network (no bridge, whose addresses are not for test traffic here), so the port and the
        # address come from the environment, as the chart's ConfigMap may set them; the image's own are 8091 on
        # all interfaces.
        env = {"LLM_INFERENCE_HOSTNAME": "127.0.0.1", "LLM_INFERENCE_PORT": str(self.port), **env}
        for key, value in env.items():
            options += ["--env", f"{key}={value}"]
        self.options = options

    def start(self) -> Container:
        run(["podman", "rm", "--force", "--time", "0", self.name], timeout=60)
        started = run(self.runtime.podman("run", "--detach", *self.options, self.image), timeout=120)
        assert started.returncode == 0, started.stderr
        return self

    def state(self) -> dict[str, Any]:
        inspected = run(["podman", "container", "inspect", self.name], timeout=60)
        assert inspected.returncode == 0, inspected.stderr
        state: dict[str, Any] = json.loads(inspected.stdout)[0]["State"]
        return state

    def logs(self) -> str:
        text = run(["podman", "logs", self.name], timeout=60)
        self.log.write_text(text.stdout + text.stderr)
        return text.stdout + text.stderr

    def wait_ready(self) -> float:
        started = time.monotonic()

        def ready() -> int:
            assert self.state()["Running"], f"the container stopped:\n{tail(self.logs())}"
            return httpx.get(self.url + "/health/ready", timeout=5).status_code

        wait_until(
            ready,
            until=lambda status: status == 200,
            timeout=READY_TIMEOUT,
            what=f"{self.url}/health/ready to answer 200",
            interval=0.2,
            details=lambda: tail(self.logs()),
        )
        return time.monotonic() - started

    def host_pids(self) -> list[int]:
        """The container's processes, as host PIDs: its PID 1 and every descendant."""
        pids, todo = [], [int(self.state()["Pid"])]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        return pids

    def terminate(self) -> int:
        """SIGTERM to the container's PID 1, as the kubelet sends it; returns the exit code."""
        killed = run(["podman", "kill", "--signal", "TERM", self.name], timeout=60)
        assert killed.returncode == 0, killed.stderr
        try:
            waited = run(["podman", "wait", self.name], timeout=GRACE_SECONDS + 60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {GRACE_SECONDS + 60} s after SIGTERM:\n{tail(self.logs())}") from None
        assert waited.returncode == 0, waited.stderr
        return int(waited.stdout.strip())

    def written(self) -> dict[str, list[str]]:
        """What the container wrote: its root filesystem's changes (podman diff) and each writable volume's files."""
        diff = run(["podman", "diff", self.name], timeout=60)
        assert diff.returncode == 0, diff.stderr
        found = {"root filesystem": sorted(diff.stdout.split("\n"))}
        for inside, host in self.writable.items():
            found[inside] = sorted(str(Path(inside) / p.relative_to(host)) for p in host.rglob("*"))
        return {where: [line for line in lines if line.strip()] for where, lines in found.items()}

    def remove(self) -> None:
        self.logs()
        run(["podman", "rm", "--force", "--time", "0", self.name], timeout=60)


@pytest.fixture(scope="module")
def served(runtime: Runtime, image: str) -> Iterator[Container]:
    """The image run as the chart runs it; ready. The drain test below ends it."""
    env = {"LLM_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}
    container = Container(runtime, image, "served", read_only=True, env=env)
    container.start()
    try:
        report("ready seconds after podman run (read-only root)", round(container.wait_ready(), 1))
        yield container
    finally:
        container.remove()


def test_the_image_is_configured_as_the_dockerfile_and_the_chart_say(image: str) -> None:
    config = json.loads(run(["podman", "image", "inspect", image], timeout=60).stdout)[0]["Config"]
    stage = dict(final_stage(IMAGES["Dockerfile"]))
    values = load_values(CHART / "values.yaml")
    assert config["User"] == stage["USER"] == f"{APP_ID}:{APP_ID}"
    assert config["User"] == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert list(config["ExposedPorts"]) == [f"{values['containerPort']}/tcp"]
    assert config["Cmd"] == ["llm-inference", "serve"] and not config.get("Entrypoint")
    assert config["WorkingDir"] == "/home/app"
    env = dict(item.split("=", 1) for item in config["Env"])
    expected = image_env(IMAGES["Dockerfile"])
    for key in ("HF_HOME", "LLM_INFERENCE_HOSTNAME", "LLM_INFERENCE_PORT", "PYTHONDONTWRITEBYTECODE"):
        assert env[key] == expected[key], key
    assert env["HF_HOME"] == values["modelCache"]["path"]
    assert env["PATH"].startswith("/opt/llm-inference/bin:")


def test_ready_within_the_bound_and_the_processes_run_as_the_images_user(served: Container) -> None:
    pid = served.host_pids()[0]
    mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    root = [mount for mount in mounts if mount[4] == "/"][-1]  # the last mount at / is the one in effect
    assert "ro" in root[5].split(","), root  # its mount options: the root filesystem is read-only
    statuses = {pid: Path(f"/proc/{pid}/status").read_text() for pid in served.host_pids()}
    assert len(statuses) >= 2, statuses  # Granian's main process and its worker
    for pid, status in statuses.items():
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split() == [str(APP_ID)] * 4, (pid, fields["Name"], fields["Uid"])
        assert fields["Gid"].split() == [str(APP_ID)] * 4, (pid, fields["Name"], fields["Gid"])
        assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1", (pid, status)
    names = sorted(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in statuses)
    report("processes", names)


def test_the_worker_holds_at_most_400_mib_at_ready(served: Container) -> None:
    """Issue 24's target, in the image as it ships (service.lock) with default settings: llama.cpp's KV cache is
    one pool of 8,192 tokens (180 MiB for this model), not a whole context per concurrent request (2.0 GB)."""
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    found = re.search(r"^process_resident_memory_bytes (\S+)$", metrics, flags=re.M)
    assert found, metrics[:2000]
    rss = float(found.group(1))
    report("worker resident memory at ready (MiB)", round(rss / 2**20, 1))
    assert rss <= 400 * 2**20


def test_a_generation_on_both_surfaces(served: Container) -> None:
    native = httpx.post(
        served.url + "/api/generate",
        json={"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
        timeout=120,
    )
    assert native.status_code == 200, native.text
    assert native.json()["usage"]["completion_tokens"] >= 1 and native.json()["text"].strip(), native.json()
    report("/api/generate answered", repr(native.json()["text"]))
    model = httpx.get(served.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    chat = httpx.post(
        served.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
        timeout=120,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"], chat.json()


def test_metrics_count_what_the_server_did(served: Container) -> None:
    answer = httpx.post(served.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 4}, timeout=120)
    assert answer.status_code == 200, answer.text

    def generated_tokens() -> float:
        text = httpx.get(served.url + "/metrics", timeout=10).text
        return sum(float(v) for v in re.findall(r"^llm_generation_tokens_total\{[^}]*\} (\S+)$", text, re.M))

    # The worker counts a request after its response has gone out: polled, not read at once.
    wait_until(generated_tokens, until=lambda n: n >= 1, timeout=30, what="llm_generation_tokens_total >= 1")
    metrics = httpx.get(served.url + "/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
    assert re.search(r"^llm_ready(\{[^}]*\})? 1(\.0)?$", metrics.text, re.M), metrics.text[:2000]


def test_swagger_ui_lists_every_operation_and_fetches_nothing_outside(browser: Any, served: Container) -> None:  # noqa: F811
    spec = httpx.get(served.url + "/openapi.json", timeout=10).json()
    operations = sum(1 for item in spec["paths"].values() for method in item if method in {"get", "post", "delete"})
    tab = Page(browser, served.url)
    try:
        tab.page.goto("/swagger-ui")
        tab.page.locator(".opblock").first.wait_for()
        assert tab.page.locator(".opblock").count() == operations
        outside = [url for url in tab.requests if not url.startswith((served.url + "/", "data:"))]
        assert outside == [], outside
        tab.assert_clean()
    finally:
        tab.close()


def test_the_playground_answers_a_question(browser: Any, served: Container) -> None:  # noqa: F811
    tab = Page(browser, served.url)
    try:
        tab.open()
        ask(tab.page, "What is the capital of France?")
        tab.page.locator(".msg.assistant .stats").filter(has_text="finish:").wait_for(timeout=300_000)
        assert tab.page.locator(".msg.assistant .body").first.inner_text().strip()
        outside = [url for url in tab.requests if not url.startswith((served.url + "/", "data:"))]
        assert outside == [], outside
        tab.assert_clean()
    finally:
        tab.close()


def test_the_charts_helm_test_passes_against_the_image(runtime: Runtime, image: str, served: Container) -> None:
    # `helm test` runs files/helm-test.py with the image's own python3, under the chart's security context.
    values = load_values(CHART / "values.yaml")
    script = (CHART / "files" / "helm-test.py").read_text()
    hook = runtime.podman(
        *("run", "--rm", *runtime.options, "--network", "host", "--read-only", "--read-only-tmpfs=false"),
        *("--cap-drop", "all", "--security-opt", "no-new-privileges"),
        *("--env", f"BASE_URL={served.url}", "--env", f"MAX_TOKENS={values['helmTest']['maxTokens']}"),
        *("--env", f"TIMEOUT_SECONDS={values['helmTest']['timeoutSeconds']}"),
        *(image, "python3", "-c", script),
    )
    done = run(hook, timeout=values["helmTest"]["timeoutSeconds"] + 60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "generated" in done.stdout, done.stdout


class Stream(threading.Thread):
    """One streamed generation in its own thread, recording when its first delta arrived and when it ended."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.started = threading.Event()
        self.body, self.status, self.finished_at = "", 0, 0.0
        self.error: Exception | None = None

    def run(self) -> None:
        body = {"prompt": COUNTING, "max_tokens": DRAINED_TOKENS, "temperature": 0}
        try:
            with httpx.stream("POST", self.url + "/api/generate/stream", json=body, timeout=GRACE_SECONDS) as response:
                self.status = response.status_code
                for text in response.iter_text():
                    self.body += text
                    self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self.started.set()


def test_sigterm_drains_the_stream_in_flight_and_exits_0(served: Container) -> None:
    stream = Stream(served.url)
    stream.start()
    assert stream.started.wait(120) and stream.error is None, stream.error
    signalled = time.monotonic()
    exit_code = served.terminate()
    stream.join(GRACE_SECONDS + 60)
    assert stream.error is None and stream.status == 200, stream.error
    done = parse_events(stream.body)[-1]  # ends with [DONE]: not cut
    assert done["type"] == "done" and done["usage"]["completion_tokens"] == DRAINED_TOKENS, done
    assert stream.finished_at > signalled
    logs = served.logs()
    assert exit_code == 0, tail(logs)
    assert '"drained: no request in flight"' in logs, tail(logs)


def test_nothing_is_written_outside_the_cache_and_tmp(runtime: Runtime, image: str, served: Container) -> None:
    """Twice: the read-only run above (a write elsewhere fails there, and so would the checks before this one),
    and a run with a writable root filesystem, whose changes `podman diff` lists (a write that the service would
    have tolerated failing shows there). Only podman's own mount points for /etc/hosts and the like may change:
    what a container of the same image that runs `true` changes."""
    assert served.written()["/home/app"] == [], served.written()
    writable = Container(runtime, image, "writable-root", read_only=False, env={})
    baseline = Container(runtime, image, "baseline", read_only=False, env={})
    try:
        writable.start()
        writable.wait_ready()
        answer = httpx.post(writable.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 4}, timeout=120)
        assert answer.status_code == 200, answer.text
        for path in ("/metrics", "/", "/swagger-ui", "/openapi.json", "/v1/models"):
            assert httpx.get(writable.url + path, timeout=30).status_code == 200, path
        assert writable.terminate() == 0, tail(writable.logs())
        done = run(runtime.podman("run", *baseline.options, image, "true"), timeout=120)
        assert done.returncode == 0, done.stderr
        written, podmans_own = writable.written(), baseline.written()
        report("written by the service (writable-root run)", written)
        assert written["root filesystem"] == podmans_own["root filesystem"], (written, podmans_own)
        assert written["/home/app"] == [], written
    finally:
        writable.remove()
        baseline.remove()


def test_the_cuda_dockerfile_stops_only_at_its_base_image(image: str) -> None:
    """Dockerfile.cuda is not built here: its base (nvidia/cuda on Ubuntu 24.04) comes from no registry reachable
    here, its build downloads gigabytes of CUDA wheels and compiles llama.cpp's CUDA kernels for six GPU
    generations (hours on two cores), and vLLM needs a GPU to start. podman parses it and reaches its first FROM,
    where it stops for the base alone; tests/test_images.py runs its steps' scripts."""
    base = base_image(IMAGES["Dockerfile.cuda"])
    assert run(["podman", "image", "exists", base], timeout=60).returncode == 1, f"{base} is here: build it"
    build = ["podman", "build", "--isolation", "chroot", "--pull=never", "--file", "Dockerfile.cuda", "."]
    done = run(build, timeout=300)
    assert done.returncode != 0
    assert "STEP 1/" in done.stdout and base.split("/")[-1] in done.stderr, done.stdout + done.stderr
