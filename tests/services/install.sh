#!/usr/bin/env bash
# Install the real servers the tests start on loopback: s3s-fs (an S3-compatible server,
# from crates.io, into ~/.cache/wormflow/tools), Slurm + munge and chromium (Debian
# packages; need root). Idempotent. Exit status 1 when something could not be installed — the tests that
# need it then say so loudly and skip.
set -uo pipefail
tools="${WORMFLOW_TOOLS:-$HOME/.cache/wormflow/tools}"
status=0
if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing s3s-fs 0.14.1 into $tools (a few minutes, once)"
  if ! CARGO_TARGET_DIR="$HOME/.cache/wormflow/s3s-target" cargo install s3s-fs@0.14.1 --features binary --locked --root "$tools" --quiet; then
    echo "!!! could not install s3s-fs: the S3 remote tests will be skipped" >&2
    status=1
  fi
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } || {
      echo "!!! could not install slurm-wlm/munge: the Slurm tests will be skipped" >&2
      status=1
    }
  else
    echo "!!! Slurm is not installed and cannot be here (needs root and apt-get): the Slurm tests will be skipped" >&2
    status=1
  fi
fi
# A real headless browser for the report test (Debian's chromium).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (Debian package) for the report's browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || {
      echo "!!! could not install chromium: the report's browser check will be skipped" >&2
      status=1
    }
  else
    echo "!!! chromium is not installed and cannot be here (needs root and apt-get): the report's browser check will be skipped" >&2
    status=1
  fi
fi
# Installed is not enough: slurm-up.sh starts the daemons, which needs root unless a Slurm
# is already running.
if command -v slurmctld >/dev/null && [ "$(id -u)" != 0 ] && ! sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|allocated'; then
  echo "!!! no Slurm is running and only root can start one: the Slurm tests will be skipped" >&2
  status=1
fi
exit $status
