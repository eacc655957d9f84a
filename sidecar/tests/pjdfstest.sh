#!/usr/bin/env bash
# POSIX conformance of the sidecar mount: runs the pjdfstest suite on a raw directory and through
# one of the three mounts of a faultline-sidecar (the way a pod's sidecar serves several volumes),
# whose two other mounts carry fault rules (every op fails with EIO on one, 5 ms on every op of the
# other), and fails if any test that passes on raw does not pass through the mount.
#
# usage: sidecar/tests/pjdfstest.sh [path/to/faultline-sidecar]
#   PJDFSTEST      pjdfstest binary (default: from PATH; install with `cargo install pjdfstest`)
#   PJD_WORKDIR    parent of the scratch directories (default: /tmp; must not be tmpfs-vs-ext4
#                  mixed — raw and source dirs are created side by side)
#   PJD_SUMMARY    write "raw: ..." and "mount: ..." summary lines to this file
# Needs root and /dev/fuse; without them it prints a reason and exits 0 (skip), or fails when CI=true.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-}"
if [[ -z "$bin" ]]; then
  for cand in "$repo/target/release/faultline-sidecar" "$repo/target/debug/faultline-sidecar"; do
    [[ -x "$cand" ]] && { bin="$cand"; break; }
  done
fi
[[ -x "${bin:-}" ]] || { echo "error: faultline-sidecar binary not found; build it or pass its path" >&2; exit 2; }

# Outside CI a missing prerequisite is a skip with its reason; in CI (CI=true or 1) it fails the run.
skip() {
  if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then echo "error: CI is set and pjdfstest cannot run: $1" >&2; exit 2; fi
  echo "SKIPPED: $1"; exit 0
}
if [[ "$(id -u)" != 0 ]]; then skip "pjdfstest through FUSE needs root"; fi
if [[ ! -e /dev/fuse ]]; then skip "/dev/fuse missing"; fi
pjd="${PJDFSTEST:-$(command -v pjdfstest || true)}"
[[ -n "$pjd" ]] || { echo "error: pjdfstest not installed (cargo install pjdfstest)" >&2; exit 2; }

work="$(mktemp -d "${PJD_WORKDIR:-/tmp}/faultline-pjd.XXXXXX")"
chmod 0755 "$work"
mkdir -m 0755 "$work/raw" "$work/src" "$work/mnt" "$work/src-logs" "$work/mnt-logs" "$work/src-cache" "$work/mnt-cache"
echo '{"mount": "logs", "rules": [{"type": "fault", "faults": [{"errno": "EIO"}]}]}' > "$work/logs.json"
echo '{"mount": "cache", "rules": [{"type": "latency", "latency": "5ms"}]}' > "$work/cache.json"
cat > "$work/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
EOF

port=$((20000 + RANDOM % 20000))
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  for m in mnt mnt-logs mnt-cache; do umount -l "$work/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

summary() { grep -E '^Summary:' "$1" | tail -1; }

echo "== pjdfstest on the raw directory ($work/raw)"
(cd "$work/raw" && "$pjd" -c "$work/pjdfstest.toml" -p "$work/raw" > "$work/raw.out" 2>&1) || true
echo "raw:   $(summary "$work/raw.out")"

echo "== pjdfstest through mount data of a three-mount faultline-sidecar ($work/mnt -> $work/src)"
"$bin" --mount "$work/src:$work/mnt:data" --mount "$work/src-logs:$work/mnt-logs:logs" \
  --mount "$work/src-cache:$work/mnt-cache:cache" --rules "$work/logs.json" --rules "$work/cache.json" \
  --rpc-listen "127.0.0.1:$port" > "$work/sidecar.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  "$bin" probe --rpc-listen "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" probe --rpc-listen "127.0.0.1:$port"
# The neighbours' faults are live while the suite runs.
if ls "$work/mnt-logs" >/dev/null 2>&1; then
  echo "error: the EIO rule on mount logs does not apply" >&2; exit 1
fi
(cd "$work/mnt" && "$pjd" -c "$work/pjdfstest.toml" -p "$work/mnt" > "$work/mount.out" 2>&1) || true
echo "mount: $(summary "$work/mount.out")"

if [[ -n "${PJD_SUMMARY:-}" ]]; then
  { echo "raw: $(summary "$work/raw.out")"; echo "mount: $(summary "$work/mount.out")"; } > "$PJD_SUMMARY"
fi

# test name -> status, one per line
results() { grep -E '^[a-z0-9_:]+ +(ok|skipped|FAILED|failed)' "$1" | awk '{print $1, $2}' | sort -u; }
results "$work/raw.out" > "$work/raw.res"
results "$work/mount.out" > "$work/mount.res"

regressions="$(join "$work/raw.res" "$work/mount.res" | awk '$2 == "ok" && $3 != "ok" {print "  " $1 ": raw ok, mount " $3}')"
missing="$(join -v1 "$work/raw.res" "$work/mount.res" | awk '$2 == "ok" {print "  " $1 ": raw ok, mount missing"}')"
skipped="$(echo "$regressions" | grep -c 'mount skipped' || true)"
failed="$(printf '%s\n%s\n' "$regressions" "$missing" | grep -v 'mount skipped' | grep -c ':' || true)"

if [[ -n "$regressions$missing" ]]; then
  echo "tests that pass on raw but not through the mount:"
  printf '%s\n' "$regressions" "$missing" | grep -v '^$' || true
fi
if [[ "$failed" != 0 ]]; then
  echo "FAIL: $failed test(s) pass on raw but fail through the mount"
  grep -E 'FAILED|failed' "$work/mount.out" | head -50 || true
  exit 1
fi
echo "OK: every test that passes on raw passes through the mount (skipped on the mount only: $skipped)"
