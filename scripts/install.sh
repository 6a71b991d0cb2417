#!/bin/sh
# Install the service and the embedded default model into $VENV (a virtual environment that exists), exactly
# as locked: every package from $LOCK with its hashes, then the project itself without dependencies.
# The Makefile and both Dockerfiles run this same script, so the images build what the tests test.
#   LOCK       requirements/*.lock to install from (default: the service alone)
#   EDITABLE   1 for a development install (the Makefile); images install a copy
set -eu
VENV=${VENV:-.venv}
PROJECT=${PROJECT:-.}
LOCK=${LOCK:-$PROJECT/requirements/service.lock}
EDITABLE=${EDITABLE:-}
# A lock is complete, so nothing is resolved here: --no-deps keeps pip from reaching past it.
"$VENV/bin/pip" install --quiet --upgrade "pip==26.3"
"$VENV/bin/pip" install --no-deps --require-hashes --requirement "$LOCK"
if [ "$EDITABLE" = 1 ]; then
    "$VENV/bin/pip" install --no-deps --editable "$PROJECT"
else
    "$VENV/bin/pip" install --no-deps "$PROJECT"
fi
"$VENV/bin/pip" install --no-deps --require-hashes --requirement "$PROJECT/requirements/no-deps.lock"
