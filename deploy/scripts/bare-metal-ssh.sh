#!/usr/bin/env bash
# Bare-metal deploy over plain ssh, for when Ansible is not at hand: the
# scripted form of the original's ssh one-liner. Installs the binaries,
# systemd units, sysctls and env files, starts rtb-exchange on one host and
# one rtb-dsp per DSP host, each DSP registering with its own address.
#
#   RTB_ONBOARD_TOKEN=... deploy/scripts/bare-metal-ssh.sh \
#       --exchange 192.0.2.20 \
#       --dsp braid=192.0.2.21 --dsp the-witness=192.0.2.22 \
#       --dsp order-of-the-sinking-star=192.0.2.23 \
#       [--bin-dir target/release] [--ssh-user ops] [--dry-run]
#
# --dry-run prints every command instead of running it (deploy/validate.sh
# uses it). The remote user needs passwordless sudo.
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR="${DEPLOY_DIR}/../target/release"
SSH_USER="${USER:-root}"
EXCHANGE=""
EXCHANGE_PORT=3000
DSP_PORT=5000
DRY_RUN=0
declare -a DSPS=()

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($# > 0)); do
    case "$1" in
        --exchange) EXCHANGE="$2"; shift 2 ;;
        --dsp) DSPS+=("$2"); shift 2 ;;
        --bin-dir) BIN_DIR="$2"; shift 2 ;;
        --ssh-user) SSH_USER="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

[[ -n "${EXCHANGE}" ]] || { echo "--exchange is required" >&2; exit 2; }
((${#DSPS[@]} > 0)) || { echo "at least one --dsp NAME=ADDRESS is required" >&2; exit 2; }
TOKEN="${RTB_ONBOARD_TOKEN:-}"
[[ -n "${TOKEN}" ]] || { echo "RTB_ONBOARD_TOKEN must be set" >&2; exit 2; }

run() {
    if ((DRY_RUN)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# remote HOST CMD...: one ssh call, the command quoted for the remote shell.
remote() {
    local host="$1"
    shift
    run ssh -o BatchMode=yes "${SSH_USER}@${host}" "$(printf '%q ' "$@")"
}

# put HOST SRC DEST MODE: copy one file into place as root.
put() {
    local host="$1" src="$2" dest="$3" mode="$4"
    local tmp
    tmp="/tmp/rtb-$(basename "${dest}").$$"
    run scp -q -o BatchMode=yes "${src}" "${SSH_USER}@${host}:${tmp}"
    remote "${host}" sudo install -o root -g root -m "${mode}" "${tmp}" "${dest}"
    remote "${host}" rm -f "${tmp}"
}

# put_text HOST DEST MODE < content
put_text() {
    local host="$1" dest="$2" mode="$3" tmp
    tmp=$(mktemp)
    cat > "${tmp}"
    if ((DRY_RUN)); then
        sed "s|^|# ${dest}: |; s|\(RTB_ONBOARD_TOKEN=\).*|\1<redacted>|" "${tmp}"
    fi
    put "${host}" "${tmp}" "${dest}" "${mode}"
    rm -f "${tmp}"
}

install_common() {
    local host="$1"
    for bin in rtb-exchange rtb-dsp; do
        if ((!DRY_RUN)) && [[ ! -x "${BIN_DIR}/${bin}" ]]; then
            echo "missing ${BIN_DIR}/${bin}: cargo build --release -p exchange-bin -p dsp-bin" >&2
            exit 1
        fi
        put "${host}" "${BIN_DIR}/${bin}" "/usr/local/bin/${bin}" 0755
    done
    put "${host}" "${DEPLOY_DIR}/systemd/rtb-exchange.service" /etc/systemd/system/rtb-exchange.service 0644
    put "${host}" "${DEPLOY_DIR}/systemd/rtb-dsp@.service" /etc/systemd/system/rtb-dsp@.service 0644
    put "${host}" "${DEPLOY_DIR}/sysctl/90-rtb.conf" /etc/sysctl.d/90-rtb.conf 0644
    remote "${host}" sudo sysctl -q -p /etc/sysctl.d/90-rtb.conf
    remote "${host}" sudo mkdir -p /etc/rtb
    remote "${host}" sudo systemctl daemon-reload
}

echo "== exchange ${EXCHANGE}"
install_common "${EXCHANGE}"
put_text "${EXCHANGE}" /etc/rtb/exchange.env 0600 <<EOF
RTB_EXCHANGE_PORT=${EXCHANGE_PORT}
RTB_EXCHANGE_BIND=0.0.0.0
RTB_EXCHANGE_DEBUG_PORT=6060
RTB_EXCHANGE_PIN=true
RTB_EXCHANGE_IO_DRIVER=auto
RTB_EXCHANGE_DEADLINE_MS=80
RTB_ONBOARD_TOKEN=${TOKEN}
RUST_LOG=info
EOF
remote "${EXCHANGE}" sudo systemctl enable --now rtb-exchange.service
remote "${EXCHANGE}" sudo systemctl restart rtb-exchange.service

for entry in "${DSPS[@]}"; do
    name="${entry%%=*}"
    addr="${entry#*=}"
    if [[ -z "${name}" || -z "${addr}" || "${name}" == "${entry}" ]]; then
        echo "bad --dsp ${entry}: expected NAME=ADDRESS" >&2
        exit 2
    fi
    echo "== dsp ${name} on ${addr}"
    install_common "${addr}"
    put_text "${addr}" "/etc/rtb/dsp-${name}.env" 0600 <<EOF
RTB_DSP_PORT=${DSP_PORT}
RTB_DSP_BASE_URL=http://${addr}:${DSP_PORT}
RTB_DSP_ONBOARD_ENDPOINTS=http://${EXCHANGE}:${EXCHANGE_PORT}/dsp
RTB_ONBOARD_TOKEN=${TOKEN}
RUST_LOG=info
EOF
    remote "${addr}" sudo systemctl enable --now "rtb-dsp@${name}.service"
    remote "${addr}" sudo systemctl restart "rtb-dsp@${name}.service"
done

echo "== registered DSPs (GET /dsp on the exchange, from the exchange host)"
remote "${EXCHANGE}" curl -fsS "http://127.0.0.1:${EXCHANGE_PORT}/dsp"
