#!/bin/sh
# A stand-in for the Dockerfile's base image (docker.io/library/python:3.11-slim-bookworm), which no registry
# reachable here serves: Debian bookworm made by debootstrap from Debian's own archive, with Debian's Python 3.11
# linked where the official image has its own (/usr/local/bin), the same apt sources, the machine's CA bundle, and
# the official image's PATH, LANG and CMD. Imported into podman's storage under the name the Dockerfile's
# PYTHON_IMAGE default resolves to, so `podman build --pull=never` finds it as `docker build` would find the real one.
#   base-image.sh IMAGE_NAME      e.g. docker.io/library/python:3.11-slim-bookworm
# The root filesystem is cached as a tarball in $CACHE (default ~/.cache/llm-inference/oci), keyed by what makes
# it, so a machine that keeps it skips debootstrap (about a minute) next time. An image already under that name
# is kept if this script imported it from that tarball ($CACHE/imported records the image's ID; no label, which
# every image built on it would inherit), replaced if this script imported it from another, and otherwise left
# alone with an error: a real python image is never overwritten.
set -eu
NAME=${1:?usage: base-image.sh IMAGE_NAME}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-inference/oci}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
RECIPE=1  # raise it when what is done to the root filesystem after debootstrap changes: a new tarball is made
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$INCLUDE" "$RECIPE" | sha256sum | cut -c1-16)
TARBALL="$CACHE/$SUITE-minbase-$KEY.tar"

if [ "$(id -u)" != 0 ]; then
    echo "$0: debootstrap and podman's storage need root" >&2
    exit 1
fi
IMPORTED="$CACHE/imported"
existing=$(podman image inspect --format '{{.Id}}' "$NAME" 2>/dev/null || true)
if [ -n "$existing" ]; then
    if grep -qx "$existing $TARBALL" "$IMPORTED" 2>/dev/null; then
        echo "base image $NAME: imported from $TARBALL before, kept"
        exit 0
    fi
    if ! grep -q "^$existing " "$IMPORTED" 2>/dev/null; then
        echo "$0: $NAME is in podman's storage and this script did not put it there; remove it or test with it" >&2
        exit 1
    fi
fi

if [ ! -s "$TARBALL" ]; then
    mkdir -p "$CACHE"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    started=$(date +%s)
    echo "debootstrap --variant=minbase --include=$INCLUDE $SUITE (from $MIRROR)"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1; then
        tail -n 40 "$root.log" >&2
        echo "$0: debootstrap failed (log above, whole in $root.log)" >&2
        exit 1
    fi
    rm -f "$root.log"
    # Where the official image has its Python, and its apt sources (updates and security beside the release).
    for program in python3 python pip3 pip; do
        target=/usr/bin/python3
        case $program in pip*) target=/usr/bin/pip3 ;; esac
        ln -sf "$target" "$root/usr/local/bin/$program"
    done
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    # The machine's CA bundle: what its pip and apt trust, the image's build trusts too.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    # As small as the official slim image: no apt lists, no caches.
    rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb
    tar --numeric-owner --xattrs -C "$root" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    echo "debootstrap: $(($(date +%s) - started)) s, $(du -h "$TARBALL" | cut -f1) in $TARBALL"
fi

if [ -n "$existing" ]; then
    podman untag "$NAME"  # the older stand-in: its layers stay while images built on it do
fi
# The official image's configuration (its PATH does name /usr/local/bin twice).
id=$(podman import --quiet \
    --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase --include=$INCLUDE $SUITE" \
    "$TARBALL" "$NAME")
podman image inspect --format '{{.Id}}' "$id" | sed "s|\$| $TARBALL|" >>"$IMPORTED"
echo "base image $NAME: imported from $TARBALL"
