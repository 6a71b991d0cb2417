#!/bin/sh
# Debian's own tools for building and running OCI images without docker or any registry (`make image-test`):
# podman and buildah build the Dockerfiles as `docker build` would, debootstrap makes their Debian base,
# crun and runc are the two OCI runtimes podman can start a container with. Idempotent: a machine that has
# them all installs nothing; otherwise it needs root and apt-get (CI runs as root on Debian).
set -eu
packages="podman buildah debootstrap crun runc fuse-overlayfs uidmap"
missing=""
for package in $packages; do
    if ! dpkg-query --show --showformat='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$0: missing$missing, and no apt-get here to install them (the image test needs Debian's packages)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "$0: missing$missing; installing them needs root (run as root, or 'make image-test SUDO=sudo')" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # one word per package
apt-get install --yes --no-install-recommends $missing
