#!/usr/bin/env bash
# Offline validation of deploy/: Helm charts, manifests, Ansible, systemd
# units, scripts, Containerfile. No cluster, no container engine, no network
# beyond PyPI/apt for the first run's installs.
#
#   deploy/validate.sh            run every check; exit 1 if any failed
#
# Installs into deploy/.venv (gitignored) when missing: helm-python-sdk
# (Helm's Go SDK, for render and lint), kubernetes-validate, ansible,
# ansible-lint, yamllint, hadolint (requirements-validate.txt). Installs the
# apt packages shellcheck and systemd (systemd-analyze) when missing and apt
# works, and promtool through scripts/need deploy; skips those checks with a
# message otherwise.
#
# The chart's rendered roster is loaded by the real exchange (rtb-exchange
# --check-config): RTB_EXCHANGE_BIN, by default the workspace's debug build
# (${CARGO_TARGET_DIR:-target}/debug/rtb-exchange; scripts/test builds it
# first). Build it before running this alone: cargo build -p exchange-bin.
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="${DEPLOY_DIR}/.venv"
OUT="${DEPLOY_DIR}/.out"
REQS="${DEPLOY_DIR}/requirements-validate.txt"
START=${SECONDS}

declare -a PASSED=() FAILED=() SKIPPED=()

log() { printf '\n== %s\n' "$*"; }

# step NAME CMD...: run one check, record its result, keep going.
step() {
    local name="$1" t0=${SECONDS} rc=0
    shift
    log "${name}"
    "$@" || rc=$?
    if ((rc == 0)); then
        PASSED+=("${name} ($((SECONDS - t0))s)")
    else
        FAILED+=("${name} (exit ${rc})")
        echo "FAILED: ${name} (exit ${rc})"
    fi
}

skip() {
    SKIPPED+=("$1: $2")
    log "$1"
    echo "SKIPPED: $2"
}

# ------------------------------------------------------------------ tools
ensure_venv() {
    local stamp="${VENV}/.requirements.sha256" want
    want=$(sha256sum "${REQS}" | cut -d' ' -f1)
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
        echo "venv up to date: ${VENV}"
        return 0
    fi
    local py
    py=$(command -v python3 || true)
    [[ -n "${py}" ]] || { echo "python3 is required" >&2; return 1; }
    if [[ ! -x "${VENV}/bin/python" ]]; then
        if ! "${py}" -m venv "${VENV}"; then
            # Debian's system python needs python3-venv for ensurepip.
            rm -rf "${VENV}"
            apt_install python3-venv && "${py}" -m venv "${VENV}"
        fi
    fi
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${REQS}"
    echo "${want}" > "${stamp}"
}

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get > /dev/null || [[ "$(id -u)" != 0 ]]; then
        echo "apt-get unavailable (or not root): cannot install $*"
        return 1
    fi
    if ((APT_UPDATED == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

# have_or_install COMMAND PACKAGE
have_or_install() {
    command -v "$1" > /dev/null && return 0
    echo "$1 missing: installing apt package $2"
    apt_install "$2" && command -v "$1" > /dev/null
}

# ------------------------------------------------------------------ checks
check_yaml() {
    # Ignore patterns in .yamllint are relative paths: run from deploy/.
    (cd "${DEPLOY_DIR}" && yamllint --strict -c .yamllint .) && echo "yamllint: clean"
}

check_charts() {
    python "${DEPLOY_DIR}/check_rendered.py"
}

check_alert_rules() {
    # The rules file as shipped, the chart's rules as check_charts rendered them (all options,
    # the release's own series selector), and the unit tests that make each alert fire.
    local rendered="${OUT}/rendered/exchange-all-options.rules.yaml"
    [[ -s "${rendered}" ]] || { echo "missing ${rendered} (the chart step did not write it)"; return 1; }
    promtool check rules "${DEPLOY_DIR}/prometheus/rtb-alerts.yaml" "${rendered}" \
        && (cd "${DEPLOY_DIR}/prometheus" && promtool test rules rtb-alerts.test.yaml)
}

check_dashboard_json() {
    python3 "${DEPLOY_DIR}/grafana/check_dashboard.py"
}

check_dashboard() {
    # The JSON checks write the dashboard's expressions as recording rules for promtool to parse.
    check_dashboard_json && promtool check rules "${OUT}/grafana-expressions.rules.yaml"
}

check_ansible_syntax() {
    local pb rc=0
    for pb in k3s-cluster.yml bare-metal.yml tests/templates.yml; do
        ansible-playbook --syntax-check -i inventory.example.yml "${pb}" || rc=1
    done
    return "${rc}"
}

check_ansible_templates() {
    # set_fact/assert only, connection local: nothing connects anywhere.
    ansible-playbook -i inventory.example.yml tests/templates.yml \
        -e k3s_token=test -e rtb_onboard_token=test
}

check_ansible_lint() {
    (cd "${DEPLOY_DIR}" && ansible-lint --offline --nocolor -c .ansible-lint ansible/)
}

check_shell() {
    shellcheck "${DEPLOY_DIR}/validate.sh" "${DEPLOY_DIR}"/scripts/*.sh \
        "${DEPLOY_DIR}"/../scripts/{need,test,demo} "${DEPLOY_DIR}"/../benches/scripts/load \
        && echo "shellcheck: clean"
}

check_ssh_script() {
    local out
    out=$(env RTB_ONBOARD_TOKEN=test "${DEPLOY_DIR}/scripts/bare-metal-ssh.sh" --dry-run \
        --exchange 192.0.2.20 --dsp braid=192.0.2.21 --dsp the-witness=192.0.2.22)
    local want rc=0
    for want in \
        '# /etc/rtb/dsp-braid.env: RTB_DSP_BASE_URL=http://192.0.2.21:5000' \
        '# /etc/rtb/dsp-the-witness.env: RTB_DSP_BASE_URL=http://192.0.2.22:5000' \
        '# /etc/rtb/dsp-braid.env: RTB_DSP_ONBOARD_ENDPOINTS=http://192.0.2.20:3000/dsp' \
        '# /etc/rtb/exchange.env: RTB_ONBOARD_TOKEN=<redacted>'; do
        if grep -qxF -- "${want}" <<< "${out}"; then
            echo "ok: ${want}"
        else
            echo "missing from the dry run: ${want}"
            rc=1
        fi
    done
    if grep -q 'RTB_ONBOARD_TOKEN=test' <<< "${out}"; then
        echo "the dry run prints the token"
        rc=1
    fi
    return "${rc}"
}

check_units() {
    # systemd-analyze verify fails on an ExecStart binary that does not exist
    # and only warns (exit 0) on unknown or malformed settings: verify copies
    # whose ExecStart points at stub executables, and fail on any output.
    local tmp out rc=0
    tmp="${OUT}/units"
    rm -rf "${tmp}"
    mkdir -p "${tmp}/bin"
    printf '#!/bin/sh\nexit 0\n' > "${tmp}/bin/rtb-exchange"
    cp "${tmp}/bin/rtb-exchange" "${tmp}/bin/rtb-dsp"
    chmod +x "${tmp}/bin/rtb-exchange" "${tmp}/bin/rtb-dsp"
    sed "s#/usr/local/bin/#${tmp}/bin/#" "${DEPLOY_DIR}/systemd/rtb-exchange.service" > "${tmp}/rtb-exchange.service"
    sed "s#/usr/local/bin/#${tmp}/bin/#" "${DEPLOY_DIR}/systemd/rtb-dsp@.service" > "${tmp}/rtb-dsp@.service"
    cp "${tmp}/rtb-dsp@.service" "${tmp}/rtb-dsp@braid.service"
    out=$(cd "${tmp}" && systemd-analyze verify --man=no \
        ./rtb-exchange.service ./rtb-dsp@.service ./rtb-dsp@braid.service 2>&1) || rc=$?
    if [[ -n "${out}" ]]; then
        printf '%s\n' "${out}"
        rc=1
    fi
    ((rc == 0)) && echo "systemd-analyze verify: rtb-exchange.service, rtb-dsp@.service (as rtb-dsp@braid): clean"
    return "${rc}"
}

check_sysctl() {
    # Format only: KEY = VALUE, KEY a sysctl name. Whether this kernel has a
    # key is reported, not failed (a container's netns hides some).
    local line key rc=0
    while IFS= read -r line; do
        [[ -z "${line}" || "${line}" == \#* ]] && continue
        if [[ ! "${line}" =~ ^([a-z0-9_.]+)\ =\ [0-9]+(\ [0-9]+)*$ ]]; then
            echo "bad line: ${line}"
            rc=1
            continue
        fi
        key="${BASH_REMATCH[1]}"
        if [[ -e "/proc/sys/${key//.//}" ]]; then
            echo "ok: ${key}"
        else
            echo "note: ${key} not present on this kernel/namespace (not checked)"
        fi
    done < "${DEPLOY_DIR}/sysctl/90-rtb.conf"
    return "${rc}"
}

check_containerfile() {
    hadolint --config "${DEPLOY_DIR}/.hadolint.yaml" "${DEPLOY_DIR}/Containerfile" && echo "hadolint: clean"
    local want rc=0
    for want in 'FROM docker.io/library/rust:1.95-bookworm AS build' \
        'cargo build --release --locked -p exchange-bin -p dsp-bin' \
        'USER 10001:10001' 'EXPOSE 3000 6060 5000' \
        'FROM docker.io/library/debian:bookworm-slim AS runtime-base' \
        'FROM runtime-base AS prebuilt' 'COPY --from=bins rtb-exchange rtb-dsp /usr/local/bin/'; do
        grep -qF -- "${want}" "${DEPLOY_DIR}/Containerfile" || { echo "Containerfile lacks: ${want}"; rc=1; }
    done
    return "${rc}"
}

# ------------------------------------------------------------------ main
mkdir -p "${OUT}"
log "tools"
t0=${SECONDS}
ensure_venv
echo "venv ready in $((SECONDS - t0))s"
export PATH="${VENV}/bin:${PATH}"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_LOCALHOST_WARNING=0
export ANSIBLE_CONFIG="${DEPLOY_DIR}/ansible/ansible.cfg"
HAVE_SHELLCHECK=0
HAVE_SYSTEMD=0
have_or_install shellcheck shellcheck && HAVE_SHELLCHECK=1
have_or_install systemd-analyze systemd && HAVE_SYSTEMD=1
# promtool (Debian's prometheus package) through the project's one list of system tools.
PROMTOOL_SKIP=""
PROMTOOL_SKIP=$("${DEPLOY_DIR}/../scripts/need" deploy) || true

step "yamllint (deploy YAML, Helm templates excluded)" check_yaml
step "helm lint + render, kubernetes-validate --strict, rendered assertions" check_charts
if command -v promtool > /dev/null; then
    step "promtool check rules + test rules (prometheus/rtb-alerts.yaml, the chart's rules)" check_alert_rules
else
    skip "promtool check rules + test rules" "${PROMTOOL_SKIP:-promtool not installed}"
fi
if command -v promtool > /dev/null; then
    step "Grafana dashboard (grafana/check_dashboard.py, promtool check rules on its PromQL)" check_dashboard
else
    step "Grafana dashboard (grafana/check_dashboard.py)" check_dashboard_json
    skip "Grafana dashboard PromQL" "${PROMTOOL_SKIP:-promtool not installed}"
fi
cd "${DEPLOY_DIR}/ansible"
step "ansible-playbook --syntax-check" check_ansible_syntax
step "ansible templates (offline assertions)" check_ansible_templates
cd "${DEPLOY_DIR}"
step "ansible-lint --offline" check_ansible_lint
if ((HAVE_SHELLCHECK)); then
    step "shellcheck" check_shell
else
    skip "shellcheck" "shellcheck not installed and apt unavailable"
fi
step "bare-metal-ssh.sh --dry-run" check_ssh_script
if ((HAVE_SYSTEMD)); then
    step "systemd-analyze verify" check_units
else
    skip "systemd-analyze verify" "systemd-analyze not installed and apt unavailable"
fi
step "sysctl file" check_sysctl
step "Containerfile (hadolint; scripts/test's containers smoke builds and runs it)" check_containerfile

log "summary ($((SECONDS - START))s)"
for s in "${PASSED[@]}"; do echo "PASS ${s}"; done
for s in "${SKIPPED[@]+"${SKIPPED[@]}"}"; do echo "SKIP ${s}"; done
for s in "${FAILED[@]+"${FAILED[@]}"}"; do echo "FAIL ${s}"; done
echo "validate: ${#PASSED[@]} passed, ${#FAILED[@]} failed, ${#SKIPPED[@]} skipped"
((${#FAILED[@]} == 0))
