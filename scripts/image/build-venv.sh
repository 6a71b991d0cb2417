#!/bin/sh
# Build the image's virtual environment at $1: the service (and EXTRAS), the embedded model, compiled
# bytecode (the root filesystem is read-only at run time). Both Dockerfiles run this; so does
# tests/test_images.py, in a clean virtual environment, so a broken step fails CI without docker.
#   CONSTRAINTS   optional pip constraints file (Dockerfile.cuda pins vLLM with it)
set -eu
TARGET=${1:?usage: build-venv.sh TARGET}
HERE=$(dirname "$0")
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$TARGET"
if [ -n "${CONSTRAINTS:-}" ]; then
    PIP_CONSTRAINT=$(realpath "$CONSTRAINTS")
    export PIP_CONSTRAINT
fi
VENV="$TARGET" PROJECT="${PROJECT:-$HERE/../..}" EXTRAS="${EXTRAS:-}" "$HERE/../install.sh"
"$TARGET/bin/python" -m compileall -q "$TARGET/lib"
# The image's own check: the settings baked into it are valid and the embedded model is there.
"$TARGET/bin/llm-inference" check-config >/dev/null
"$TARGET/bin/llm-inference" fetch-model
