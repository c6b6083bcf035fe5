#!/usr/bin/env bash
# Makes the runtime stage's Debian base image locally, for machines that reach
# Debian's package mirror but no image registry: `debootstrap --variant=minbase`
# into a temporary directory, trimmed like debian:*-slim (no docs but the
# copyright files, no man pages, no locales, no apt lists), then
# `podman import`ed under the name deploy/Containerfile's runtime-base stage
# uses (docker.io/library/debian:bookworm-slim), so that `podman build` finds
# it locally and never tries to pull it.
#
#   deploy/scripts/make-base-image.sh [--if-missing] [--tag NAME]
#       [--suite bookworm] [--mirror http://deb.debian.org/debian]
#
# --if-missing: do nothing when the tag already exists. Prints the tag made.
# Root only (debootstrap and rootful podman); about 30 s on the 2-core
# development machine. The release signature is checked with the host's
# debian-archive-keyring, as debootstrap does by default.
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
TAG=""
IF_MISSING=0

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($# > 0)); do
    case "$1" in
        --if-missing) IF_MISSING=1; shift ;;
        --tag) TAG="$2"; shift 2 ;;
        --suite) SUITE="$2"; shift 2 ;;
        --mirror) MIRROR="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

if [[ -z "${TAG}" ]]; then
    # The one place the name is written: the Containerfile's runtime-base stage.
    TAG=$(sed -n 's/^FROM \([^ ]*\) AS runtime-base$/\1/p' "${DEPLOY_DIR}/Containerfile")
    [[ -n "${TAG}" ]] || { echo "no 'FROM ... AS runtime-base' line in deploy/Containerfile" >&2; exit 1; }
fi
if ((IF_MISSING)) && podman image exists "${TAG}"; then
    echo "${TAG}"
    exit 0
fi
[[ "$(id -u)" == 0 ]] || { echo "make-base-image: needs root (debootstrap, rootful podman)" >&2; exit 1; }
for tool in debootstrap podman tar; do
    command -v "${tool}" >/dev/null || { echo "make-base-image: missing ${tool} (scripts/need containers)" >&2; exit 1; }
done

ROOTFS=$(mktemp -d /var/tmp/rtb-base.XXXXXX)
trap 'rm -rf "${ROOTFS}"' EXIT

echo "make-base-image: debootstrap --variant=minbase ${SUITE} from ${MIRROR}" >&2
if ! debootstrap --variant=minbase "${SUITE}" "${ROOTFS}" "${MIRROR}" >"${ROOTFS}.log" 2>&1; then
    tail -n 20 "${ROOTFS}.log" >&2
    rm -f "${ROOTFS}.log"
    exit 1
fi
rm -f "${ROOTFS}.log"

# The slim variant's trimming (debuerreotype-slimify): dpkg skips these paths
# on later installs too, so `apt-get install` in the Containerfile stays slim.
cat >"${ROOTFS}/etc/dpkg/dpkg.cfg.d/rtb-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
# And the official images' apt settings (debuerreotype-minimizing-config):
# no package caches or .debs kept after a run, no translations, gzipped lists.
cat >"${ROOTFS}/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"${ROOTFS}/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"${ROOTFS}/etc/apt/apt.conf.d/docker-gzip-indexes"
find "${ROOTFS}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "${ROOTFS}/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "${ROOTFS}"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
rm -rf "${ROOTFS}"/var/cache/apt/*.bin "${ROOTFS}"/var/cache/apt/archives/*.deb \
    "${ROOTFS}"/var/lib/apt/lists/*

tar --numeric-owner -C "${ROOTFS}" -c . |
    podman import --quiet --change 'CMD ["bash"]' \
        --change "LABEL rtb.base=debootstrap-minbase-${SUITE}" \
        --message "debootstrap --variant=minbase ${SUITE} ${MIRROR}" - "${TAG}" >/dev/null
echo "${TAG}"
