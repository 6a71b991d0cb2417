# syntax=docker/dockerfile:1
# CPU image: llama.cpp behind the HTTP API, with the embedded SmolLM2-135M model baked in.
#   docker build -t llm-inference .
#   docker run -p 8091:8091 llm-inference
# Every step is a script under scripts/ (tests/test_images.py runs them in a clean virtual environment, fast);
# `make image-test` builds this file itself with podman and runs the image as the chart does.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Portable SIMD (x86-64-v3) instead of the build machine's own (-march=native), so the image runs on any
# AVX2 node; override for other fleets.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
ENV CMAKE_ARGS=${LLAMA_CMAKE_ARGS} PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY scripts/image/system-packages.sh scripts/image/
RUN scripts/image/system-packages.sh build
COPY . .
RUN scripts/image/build-venv.sh /opt/llm-inference

FROM ${PYTHON_IMAGE} AS runtime
COPY scripts/image/system-packages.sh scripts/image/runtime-user.sh /tmp/image/
RUN /tmp/image/system-packages.sh runtime && /tmp/image/runtime-user.sh && rm -r /tmp/image
COPY --from=build /opt/llm-inference /opt/llm-inference
ENV PATH=/opt/llm-inference/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/var/cache/huggingface \
    LLM_INFERENCE_HOSTNAME=0.0.0.0 \
    LLM_INFERENCE_PORT=8091
USER 10001:10001
WORKDIR /home/app
EXPOSE 8091
# Granian's main process is PID 1: it forwards SIGTERM to its worker, which drains (docs/graceful-drain.md).
CMD ["llm-inference", "serve"]
