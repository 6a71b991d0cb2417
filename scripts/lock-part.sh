#!/bin/sh
# Print part of a pip lock (requirements/*.lock): `only` the entry of one package, or the lock `without` it.
# An entry is its `name==version \` line and the indented hash and comment lines under it, so what is printed
# is itself a valid lock with hashes (install.sh builds llama-cpp-python apart from the prebuilt wheels).
#   usage: lock-part.sh LOCK PACKAGE only|without
set -eu
LOCK=${1:?usage: lock-part.sh LOCK PACKAGE only|without}
PACKAGE=${2:?usage: lock-part.sh LOCK PACKAGE only|without}
MODE=${3:?usage: lock-part.sh LOCK PACKAGE only|without}
case "$MODE" in only | without) ;; *) echo "lock-part.sh: MODE must be only or without, not $MODE" >&2; exit 2 ;; esac
awk -v package="$PACKAGE" -v mode="$MODE" '
    /^[^ #]/ { inside = (index($0, package "==") == 1) }
    (mode == "only") == inside
' "$LOCK"
