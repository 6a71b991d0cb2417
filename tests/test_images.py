"""Dockerfile and Dockerfile.cuda: their steps are scripts that this test runs without a container build.

tests/deploy/test_image.py (`make image-test`) builds and runs the CPU image itself with podman; Dockerfile.cuda
cannot be built here (no CUDA base image, no GPU), so these script-level tests are what checks its steps.

The CPU image's build step (scripts/image/build-venv.sh) runs in a clean virtual environment and the result
serves the embedded model with the image's own environment. The CUDA image installs requirements/cuda.lock
(vLLM 0.26.0 with torch 2.11.0, resolved by `make lock`; tests/test_lock.py checks it against pyproject.toml).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from llm_inference.model_spec import parse_spec
from llm_inference.settings import DEFAULTS, load_settings
from tests.deploy.chart import CHART, load_values
from tests.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"Dockerfile": ROOT / "Dockerfile", "Dockerfile.cuda": ROOT / "Dockerfile.cuda"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def image_env(dockerfile: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in final_stage(dockerfile):
        if op == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return env


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_every_build_step_is_a_script_of_the_repository(name: str) -> None:
    for op, args in instructions(IMAGES[name]):
        if op != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = [w for w in shlex.split(command) if not re.match(r"^[A-Z_]+=", w)]
            program = words[0]
            assert program == "rm" or re.match(r"^(/tmp/image|scripts/image)/[\w.-]+\.sh$", program), (
                f"{name}: `{command.strip()}` is a build step outside scripts/image/ (tests cannot run it)"
            )
            script = ROOT / "scripts" / "image" / Path(program).name
            if program != "rm":
                assert script.is_file() and os.access(script, os.X_OK), script
                assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, f"{script}: syntax error"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_runs_as_the_chart_expects(name: str) -> None:
    values = load_values(CHART / "values.yaml")
    stage = dict(final_stage(IMAGES[name]))
    env = image_env(IMAGES[name])
    assert stage["USER"] == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert stage["EXPOSE"] == str(values["containerPort"]) == str(DEFAULTS.inference_port)
    assert json.loads(stage["CMD"]) == ["llm-inference", "serve"]
    assert env["HF_HOME"] == values["modelCache"]["path"]
    assert env["LLM_INFERENCE_HOSTNAME"] == "0.0.0.0"
    if name == "Dockerfile.cuda":
        # auto: vLLM for Hugging Face models, llama.cpp (built with CUDA) for GGUF files; llama.cpp's CUDA
        # library finds the CUDA runtime and cuBLAS that torch's wheels install.
        assert env["LLM_BACKEND"] == "auto"
        assert env["LD_LIBRARY_PATH"] == "/opt/llm-inference/lib/python3.12/site-packages/nvidia/cu13/lib"
        # Its default model is a hub repo for vLLM (the image's fast path).
        settings, _ = load_settings({k: v for k, v in env.items() if k.startswith("LLM_")})
        default = parse_spec(settings.effective_default_model, settings.model_path)
        assert default.source == "hub" and not default.is_gguf, default


def test_cuda_image_installs_the_locked_vllm_that_runs_on_the_lent_gpu() -> None:
    # requirements/cuda.lock pins vLLM 0.26.0 with torch 2.11.0 (tests/test_lock.py checks it against
    # pyproject's `gpu` extra); the image must install from it.
    build = next(args for op, args in instructions(IMAGES["Dockerfile.cuda"]) if op == "RUN" and "build-venv" in args)
    assert "LOCK=requirements/cuda.lock" in build
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    gpu_vllm = next(Requirement(r) for r in extra if Requirement(r).name == "vllm")
    assert gpu_vllm.specifier.contains("0.26.0"), "the gpu extra must allow the image's vLLM"


@pytest.mark.model
def test_cpu_image_build_step_in_a_clean_virtual_environment(tmp_path: Path) -> None:
    """Run the Dockerfile's build step, then serve from its result with the image's environment."""
    venv = tmp_path / "opt-llm-inference"
    build = subprocess.run(
        ["scripts/image/build-venv.sh", str(venv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "VIRTUAL_ENV"))},
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "smollm2-135m-instruct\t" in build.stdout  # fetch-model found the embedded model

    # A copy of the project, not the source tree, with bytecode compiled for a read-only root filesystem.
    located = subprocess.run(
        [str(venv / "bin/python"), "-c", "import llm_inference; print(llm_inference.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(located).parent
    assert package.is_relative_to(venv), located
    assert list((package / "__pycache__").glob("app.cpython-*.pyc"))

    env = image_env(IMAGES["Dockerfile"]) | {"HF_HOME": str(tmp_path / "hf-home")}
    env["PATH"] = env["PATH"].replace("/opt/llm-inference", str(venv)).replace("$PATH", os.environ["PATH"])
    port = free_port()  # the image's 8091 may be taken on a shared machine
    with ServerProcess(
        env | {"LLM_INFERENCE_PORT": str(port)},
        log_path=tmp_path / "server.log",
        port=port,
        command=[str(venv / "bin/llm-inference"), "serve"],
    ) as server:
        server.wait_for("/health/ready", 200)
        answer = httpx.post(
            server.url + "/api/generate",
            timeout=120,
            json={"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0},
        )
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
        assert server.stop() == 0


CUDA_PROBE = """
cmake_minimum_required(VERSION 3.18)
project(probe LANGUAGES CXX CUDA)
find_package(CUDAToolkit REQUIRED)
add_library(probe SHARED probe.cu)
target_link_libraries(probe PRIVATE CUDA::cudart CUDA::cublas CUDA::cublasLt)
"""
CUDA_SOURCE = """
#include <cublas_v2.h>
#include <cuda_fp16.h>
__global__ void scale(half *x, float by) { x[threadIdx.x] = __float2half(__half2float(x[threadIdx.x]) * by); }
extern "C" int probe(void) { cublasHandle_t handle; return (int)cublasCreate(&handle); }
"""


@pytest.mark.slow
def test_cuda_image_toolchain_builds_a_cuda_library_with_cmake(tmp_path: Path) -> None:
    # What Dockerfile.cuda's build stage does before llama-cpp-python compiles llama.cpp with CUDA: the
    # toolkit from NVIDIA's wheels, then CMake's CUDA language and FindCUDAToolkit over it (no GPU needed).
    toolkit = tmp_path / "cuda"
    subprocess.run(["scripts/image/cuda-toolchain.sh", str(toolkit)], cwd=ROOT, check=True, timeout=600)
    cmake_args = next(
        args for op, args in instructions(IMAGES["Dockerfile.cuda"]) if op == "ARG" and args.startswith("LLAMA_CMAKE")
    )
    for flag in ("-DGGML_CUDA=ON", "-DGGML_CUDA_NO_VMM=ON", "-DCUDAToolkit_ROOT=/opt/cuda"):
        assert flag in cmake_args, flag
    (tmp_path / "src").mkdir()
    (tmp_path / "src/CMakeLists.txt").write_text(CUDA_PROBE)
    (tmp_path / "src/probe.cu").write_text(CUDA_SOURCE)
    configure = ["cmake", "-S", tmp_path / "src", "-B", tmp_path / "build", f"-DCUDAToolkit_ROOT={toolkit}"]
    configure += [f"-DCMAKE_CUDA_COMPILER={toolkit}/bin/nvcc", "-DCMAKE_CUDA_ARCHITECTURES=90"]
    subprocess.run(configure, check=True, timeout=300, capture_output=True)
    subprocess.run(["cmake", "--build", tmp_path / "build"], check=True, timeout=300, capture_output=True)
    library = tmp_path / "build/libprobe.so"
    needed = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
    assert "libcudart.so.13" in needed and "libcublas.so.13" in needed, needed
