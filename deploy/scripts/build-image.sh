#!/usr/bin/env bash
# Builds the rtb image with podman from binaries built outside it (the
# Containerfile's `prebuilt` target), for machines where the Rust image cannot
# be pulled. Makes the Debian base first when it is missing
# (deploy/scripts/make-base-image.sh), and never pulls.
#
#   cargo build --release -p exchange-bin -p dsp-bin
#   deploy/scripts/build-image.sh [--bin-dir target/release] [--tag localhost/rtb:release]
#
# Prints the tag built. The image: tini as PID 1 forwarding SIGTERM to
# rtb-exchange (default command) or rtb-dsp (--entrypoint), UID/GID 10001.
# OCI runtime: $RTB_OCI_RUNTIME (default runc: crun refuses hybrid cgroup v1
# hosts such as the development machine).
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR="${DEPLOY_DIR}/../target/release"
TAG=localhost/rtb:release
RUNTIME="${RTB_OCI_RUNTIME:-runc}"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($# > 0)); do
    case "$1" in
        --bin-dir) BIN_DIR="$2"; shift 2 ;;
        --tag) TAG="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

for bin in rtb-exchange rtb-dsp; do
    [[ -x "${BIN_DIR}/${bin}" ]] || {
        echo "build-image: no ${BIN_DIR}/${bin} (cargo build --release -p exchange-bin -p dsp-bin)" >&2
        exit 1
    }
done
"${DEPLOY_DIR}/scripts/make-base-image.sh" --if-missing >/dev/null

# podman's default RLIMIT_NOFILE/NPROC for the build's RUN steps can exceed
# what this process may set (20000 open files here): ask for what we have.
# --network host: the RUN steps (apt-get) use the host's network, so the build
# leaves no bridge (cni-podman0) or NAT rules behind.
podman build --runtime "${RUNTIME}" --pull=never --network host \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    -f "${DEPLOY_DIR}/Containerfile" --target prebuilt \
    --build-context "bins=$(cd "${BIN_DIR}" && pwd)" \
    -t "${TAG}" "${DEPLOY_DIR}" >&2
echo "${TAG}"
