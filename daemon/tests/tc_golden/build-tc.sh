#!/usr/bin/env bash
# Builds the `tc` the golden fixtures were captured with: iproute2 v7.1.0, only lib/ and tc/.
# Debian 12's tc (6.1) encodes netem delays in ticks and truncates tbf transmit times, so its
# requests differ; the fixtures and the encoder follow 7.1.
#
#   daemon/tests/tc_golden/build-tc.sh [DEST]          # DEST defaults to target/iproute2
#   IPROUTE2_GIT=/path/to/iproute2.git daemon/tests/tc_golden/build-tc.sh   # use a local clone/mirror
#
# Needs: git, gcc, make, pkg-config, bison, flex (apt-get install bison flex).
set -euo pipefail
tag=v7.1.0
dest=${1:-${CARGO_TARGET_DIR:-target}/iproute2}
src=${IPROUTE2_GIT:-https://github.com/iproute2/iproute2.git}

if [[ ! -x "$dest/tc/tc" ]]; then
    rm -rf "$dest"
    if [[ -d "$src" ]]; then
        mkdir -p "$dest"
        git --git-dir="$src" archive "$tag" | tar -x -C "$dest"
    else
        git clone --quiet --depth 1 --branch "$tag" "$src" "$dest"
    fi
    (cd "$dest" && ./configure --libbpf_force off >/dev/null && make -j2 SUBDIRS="lib tc" >/dev/null)
fi
"$dest/tc/tc" -V
echo "FAULTLINE_TC=$dest/tc/tc"
