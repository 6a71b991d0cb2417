#!/bin/sh
# Install the service and the embedded default model into $VENV (a virtual environment that exists), exactly
# as locked: every package from $LOCK with its hashes, then the project itself without dependencies.
# The Makefile and both Dockerfiles run this same script, so the images build what the tests test.
#   LOCK           requirements/*.lock to install from (default: the service alone)
#   EDITABLE       1 for a development install (the Makefile); images install a copy
#   PREBUILT_ONLY  1 to install everything but llama-cpp-python, the one package compiled here (`make lint`
#                  needs only the Python packages, not the minutes of C++ compilation)
set -eu
HERE=$(dirname "$0")
VENV=${VENV:-.venv}
PROJECT=${PROJECT:-.}
LOCK=${LOCK:-$PROJECT/requirements/service.lock}
EDITABLE=${EDITABLE:-}
PREBUILT_ONLY=${PREBUILT_ONLY:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" install --quiet --upgrade "pip==26.3"

# First every prebuilt wheel (a minute at most); a lock is complete, so --no-deps keeps pip from reaching past it.
"$HERE/lock-part.sh" "$LOCK" llama-cpp-python without >"$WORK/prebuilt.lock"
"$VENV/bin/pip" install --no-deps --require-hashes --requirement "$WORK/prebuilt.lock"
if [ "$EDITABLE" = 1 ]; then
    "$VENV/bin/pip" install --no-deps --editable "$PROJECT"
else
    "$VENV/bin/pip" install --no-deps "$PROJECT"
fi
"$VENV/bin/pip" install --no-deps --require-hashes --requirement "$PROJECT/requirements/no-deps.lock"

# Then llama-cpp-python, which pip compiles from its source (llama.cpp, C and C++), with its progress shown.
"$HERE/lock-part.sh" "$LOCK" llama-cpp-python only >"$WORK/llama.lock"
if [ "$PREBUILT_ONLY" = 1 ] || [ ! -s "$WORK/llama.lock" ]; then
    exit 0
fi
# Only what the service loads: libllama and ggml. Not the multimodal library (mtmd/llava) nor llama.cpp's
# "common" library, which llama-cpp-python builds by default and never loads (llama-cpp-no-common.cmake says
# how); llama.cpp's tools, examples and tests are already off when it is built as a subproject. Half the
# compile time (bench/llama_build.py). CMAKE_ARGS given by the caller (the images' SIMD flags, CUDA) come after.
NO_COMMON="$(cd "$HERE" && pwd)/llama-cpp-no-common.cmake"
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$NO_COMMON ${CMAKE_ARGS:-}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
VERSION=$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' "$WORK/llama.lock")
echo "llama-cpp-python $VERSION: compiling llama.cpp on $CMAKE_BUILD_PARALLEL_LEVEL cores unless pip's cache holds" \
    "the wheel (about 2 minutes on two idle cores, longer on busy ones; pip keeps the result for next time)"
STARTED=$(date +%s)
{
    "$VENV/bin/pip" install --verbose --no-deps --require-hashes --requirement "$WORK/llama.lock" 2>&1
    echo $? >"$WORK/status"
} | "$VENV/bin/python" "$HERE/build_progress.py" "$WORK/build.log"
if [ "$(cat "$WORK/status")" != 0 ]; then
    echo "llama-cpp-python $VERSION failed to build; the last lines of pip's output:" >&2
    tail -n 60 "$WORK/build.log" >&2
    exit 1
fi
echo "llama-cpp-python $VERSION: installed in $(($(date +%s) - STARTED)) s"
