#!/usr/bin/env bash
# Remotes: push and pull the default pipeline's store to a real S3-compatible server
# (s3s-fs on loopback) — MB/s and objects/s — and `run --pull` on a pipeline the remote
# has in full, against running it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/wormflow/target}"
wf="$target/release/wormflow"
s3s="${WORMFLOW_S3S_FS:-$HOME/.cache/wormflow/tools/bin/s3s-fs}"
[ -x "$s3s" ] || bash "$repo/tests/services/install.sh" || true
[ -x "$s3s" ] || { echo "remote bench: s3s-fs is not installed; skipped" >&2; exit 0; }
work="$HOME/.cache/wormflow/bench/remote"
rm -rf "$work" && mkdir -p "$work/s3/wormflow"
for who in a b c; do
  mkdir -p "$work/$who" && cp "$repo/pipeline.toml" "$work/$who/" && ln -s "$repo/data" "$work/$who/data"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$s3s" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$work/s3" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
remote=(--set 'remotes.s3.url="s3://wormflow/lab"' --set "remotes.s3.endpoint=\"http://127.0.0.1:$port\"")
now() { python3 -c 'import time; print(time.time())'; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "== remote: the default pipeline's store through s3s-fs on loopback"
t0=$(now); (cd "$work/a" && "$wf" run >/dev/null 2>&1); t1=$(now)
run_s=$(elapsed "$t0" "$t1")
(cd "$work/a" && "$wf" "${remote[@]}" push 2>&1 | tail -1 | sed 's/^/push:  /')
(cd "$work/b" && "$wf" "${remote[@]}" pull 2>&1 | grep '^pulled' | sed 's/^/pull:  /')
t0=$(now); (cd "$work/c" && "$wf" "${remote[@]}" run --pull >/dev/null 2>&1); t1=$(now)
pull_s=$(elapsed "$t0" "$t1")
(cd "$work/b" && "$wf" run 2>&1 | tail -1 | sed 's/^/teammate run after pull: /')
python3 -c "print(f'run from scratch {$run_s} s; run --pull on a fully pushed pipeline {$pull_s} s  →  {$run_s / $pull_s:.0f}× faster')"
