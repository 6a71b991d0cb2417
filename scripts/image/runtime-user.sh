#!/bin/sh
# The unprivileged user the service runs as (uid/gid 10001, the Helm chart's runAsUser), and the
# directories it writes to. In Kubernetes these are volumes (the root filesystem is read-only).
set -eu
APP_UID=${APP_UID:-10001}
HF_HOME=${HF_HOME:-/var/cache/huggingface}
groupadd --system --gid "$APP_UID" app
useradd --system --uid "$APP_UID" --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
mkdir -p "$HF_HOME"
chown app:app "$HF_HOME"
