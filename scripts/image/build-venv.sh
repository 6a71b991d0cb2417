#!/bin/sh
# Build the image's virtual environment at $1: the service as locked, the embedded model, compiled
# bytecode (the root filesystem is read-only at run time). Both Dockerfiles run this; so does
# tests/test_images.py, in a clean virtual environment, so a broken step fails CI without docker.
#   LOCK   the lock file to install (default requirements/service.lock; Dockerfile.cuda: requirements/cuda.lock)
set -eu
TARGET=${1:?usage: build-venv.sh TARGET}
HERE=$(dirname "$0")
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$TARGET"
PROJECT=${PROJECT:-$HERE/../..}
VENV="$TARGET" PROJECT="$PROJECT" LOCK="${LOCK:-$PROJECT/requirements/service.lock}" "$HERE/../install.sh"
"$TARGET/bin/python" -m compileall -q "$TARGET/lib"
# The image's own check: the settings baked into it are valid and the embedded model is there.
"$TARGET/bin/llm-inference" check-config >/dev/null
"$TARGET/bin/llm-inference" fetch-model
