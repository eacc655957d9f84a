#!/usr/bin/env bash
# The sidecar's per-pod overhead in processes, threads and resident memory: one 1-mount sidecar,
# three 1-mount sidecars (the earlier injection shape, a sidecar per volume) and one 3-mount
# sidecar (one per pod), each idle after it is ready and one file was read through each mount.
# The figures of docs/webhook.md ("What one sidecar per pod saves") come from this script.
#
# usage: sidecar/tests/overhead.sh [path/to/faultline-sidecar]   (root and /dev/fuse needed;
#        default: target/release/faultline-sidecar, build it with cargo build --release)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${1:-$repo/target/release/faultline-sidecar}
[[ -x "$bin" ]] || { echo "error: $bin not found: build it or pass its path" >&2; exit 2; }
w=$(mktemp -d /tmp/faultline-overhead.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1; for m in "$w"/mnt*; do umount -l "$m" 2>/dev/null || true; done; rm -rf "$w"; }
trap cleanup EXIT
for v in a b c; do mkdir -p "$w/src-$v" "$w/mnt1-$v" "$w/mnt3-$v" "$w/mnts-$v"; echo "$v" > "$w/src-$v/f"; done
port() { echo $((30000 + RANDOM % 20000)); }
wait_ready() { for _ in $(seq 100); do "$bin" probe --rpc-listen "127.0.0.1:$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready $1" >&2; return 1; }
stats() { # pid... -> processes threads rss_kib
  local t=0 r=0 n=0
  for p in "$@"; do n=$((n+1)); t=$((t + $(awk '/^Threads:/{print $2}' /proc/$p/status))); r=$((r + $(awk '/^VmRSS:/{print $2}' /proc/$p/status))); done
  echo "processes=$n threads=$t rss_kib=$r"
}
# one sidecar, one mount
p1=$(port); "$bin" --mount "$w/src-a:$w/mnts-a:a" --rpc-listen 127.0.0.1:$p1 2>/dev/null & pids+=($!); single=$!
wait_ready $p1; cat "$w/mnts-a/f" >/dev/null
# earlier shape: three sidecars, one mount each
three=()
for v in a b c; do p=$(port); "$bin" --mount "$w/src-$v:$w/mnt1-$v:$v" --rpc-listen 127.0.0.1:$p 2>/dev/null & pids+=($!); three+=($!); wait_ready $p; cat "$w/mnt1-$v/f" >/dev/null; done
# now: one sidecar, three mounts
p3=$(port); "$bin" --mount "$w/src-a:$w/mnt3-a:a" --mount "$w/src-b:$w/mnt3-b:b" --mount "$w/src-c:$w/mnt3-c:c" --rpc-listen 127.0.0.1:$p3 2>/dev/null & pids+=($!); multi=$!
wait_ready $p3; for v in a b c; do cat "$w/mnt3-$v/f" >/dev/null; done
sleep 2
echo "1 volume, 1 sidecar:      $(stats $single)"
echo "3 volumes, 3 sidecars:    $(stats "${three[@]}")"
echo "3 volumes, 1 sidecar:     $(stats $multi)"
echo "threads of the 3-mount sidecar by name:"; ls /proc/$multi/task | while read t; do cat /proc/$multi/task/$t/comm; done | sort | uniq -c
