#!/usr/bin/env bash
# POSIX conformance of the sidecar mount: runs the pjdfstest suite on a raw directory and through
# one of the three mounts of a faultline-sidecar (the way a pod's sidecar serves several volumes),
# whose two other mounts carry fault rules (every op fails with EIO on one, 5 ms on every op of the
# other), and fails if any test that passes on raw does not pass through the mount. The mount is
# tested in each I/O mode (`exact`, then `fast`: kernel passthrough for files no rule matches).
#
# usage: sidecar/tests/pjdfstest.sh [path/to/faultline-sidecar]
#   PJDFSTEST      pjdfstest binary (default: from PATH; install with `cargo install pjdfstest`)
#   PJD_WORKDIR    parent of the scratch directories (default: /tmp; must not be tmpfs-vs-ext4
#                  mixed — raw and source dirs are created side by side)
#   PJD_SUMMARY    write "raw: ..." and "mount <mode>: ..." summary lines to this file
#   PJD_IO_MODES   the sidecar's --io-mode values to test (default: "exact fast")
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
mkdir -m 0755 "$work/raw"
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
stop() {
  if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=""
  for m in "$work"/m-*/mnt*; do [[ -d "$m" ]] && { umount -l "$m" 2>/dev/null || true; }; done
}
cleanup() {
  stop
  rm -rf "$work"
}
trap cleanup EXIT

summary() { grep -E '^Summary:' "$1" | tail -1; }

echo "== pjdfstest on the raw directory ($work/raw)"
(cd "$work/raw" && "$pjd" -c "$work/pjdfstest.toml" -p "$work/raw" > "$work/raw.out" 2>&1) || true
echo "raw:   $(summary "$work/raw.out")"

# test name -> status, one per line
results() { grep -E '^[a-z0-9_:]+ +(ok|skipped|FAILED|failed)' "$1" | awk '{print $1, $2}' | sort -u; }
results "$work/raw.out" > "$work/raw.res"
[[ -n "${PJD_SUMMARY:-}" ]] && echo "raw: $(summary "$work/raw.out")" > "$PJD_SUMMARY"

status=0
for mode in ${PJD_IO_MODES:-exact fast}; do
  d="$work/m-$mode"
  port=$((port + 1))
  mkdir -m 0755 "$d" "$d/src" "$d/mnt" "$d/src-logs" "$d/mnt-logs" "$d/src-cache" "$d/mnt-cache"
  echo "== pjdfstest through mount data of a three-mount faultline-sidecar, --io-mode $mode ($d/mnt -> $d/src)"
  "$bin" --mount "$d/src:$d/mnt:data" --mount "$d/src-logs:$d/mnt-logs:logs" \
    --mount "$d/src-cache:$d/mnt-cache:cache" --rules "$work/logs.json" --rules "$work/cache.json" \
    --rpc-listen "127.0.0.1:$port" --io-mode "$mode" > "$d/sidecar.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    "$bin" probe --rpc-listen "127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$bin" probe --rpc-listen "127.0.0.1:$port"
  # The neighbours' faults are live while the suite runs.
  if ls "$d/mnt-logs" >/dev/null 2>&1; then
    echo "error: the EIO rule on mount logs does not apply" >&2; exit 1
  fi
  (cd "$d/mnt" && "$pjd" -c "$work/pjdfstest.toml" -p "$d/mnt" > "$d/mount.out" 2>&1) || true
  stop
  echo "mount ($mode): $(summary "$d/mount.out")"
  [[ -n "${PJD_SUMMARY:-}" ]] && echo "mount $mode: $(summary "$d/mount.out")" >> "$PJD_SUMMARY"
  results "$d/mount.out" > "$d/mount.res"

  regressions="$(join "$work/raw.res" "$d/mount.res" | awk '$2 == "ok" && $3 != "ok" {print "  " $1 ": raw ok, mount " $3}')"
  missing="$(join -v1 "$work/raw.res" "$d/mount.res" | awk '$2 == "ok" {print "  " $1 ": raw ok, mount missing"}')"
  skipped="$(echo "$regressions" | grep -c 'mount skipped' || true)"
  failed="$(printf '%s\n%s\n' "$regressions" "$missing" | grep -v 'mount skipped' | grep -c ':' || true)"

  if [[ -n "$regressions$missing" ]]; then
    echo "tests that pass on raw but not through the mount (--io-mode $mode):"
    printf '%s\n' "$regressions" "$missing" | grep -v '^$' || true
  fi
  if [[ "$failed" != 0 ]]; then
    echo "FAIL (--io-mode $mode): $failed test(s) pass on raw but fail through the mount"
    grep -E 'FAILED|failed' "$d/mount.out" | head -50 || true
    status=1
  else
    echo "OK (--io-mode $mode): every test that passes on raw passes through the mount (skipped on the mount only: $skipped)"
  fi
done
exit "$status"
