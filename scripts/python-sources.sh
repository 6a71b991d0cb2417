#!/bin/sh
# Unpack the Python package of one locked source distribution into DEST, without building it: mypy reads
# llama-cpp-python's typed sources from there, so `make lint` does not wait minutes for llama.cpp to compile.
# The archive is the one the lock names, checked against its hash.
#   usage: python-sources.sh LOCK PACKAGE IMPORT_NAME DEST    (run with $VENV's pip)
set -eu
LOCK=${1:?usage: python-sources.sh LOCK PACKAGE IMPORT_NAME DEST}
PACKAGE=${2:?}
IMPORT_NAME=${3:?}
DEST=${4:?}
VENV=${VENV:-.venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$(dirname "$0")/lock-part.sh" "$LOCK" "$PACKAGE" only >"$WORK/part.lock"
"$VENV/bin/pip" download --quiet --no-deps --require-hashes --requirement "$WORK/part.lock" \
    --dest "$WORK/download"
mkdir -p "$WORK/unpacked"
tar -xzf "$WORK"/download/*.tar.gz -C "$WORK/unpacked"
rm -rf "${DEST:?}/$IMPORT_NAME"
mkdir -p "$DEST"
mv "$WORK"/unpacked/*/"$IMPORT_NAME" "$DEST/$IMPORT_NAME"
