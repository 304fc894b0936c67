#!/usr/bin/env bash
# Sluice's whole test suite — the command the README gives and `.ci/run` calls.
#
# It installs what the tests need first (idempotently: a second run installs nothing), then runs
# formatting and lint checks, every unit/scenario/property test of the workspace, and a short
# smoke run of the benchmark command so a broken `sluice-bench` cannot land.
#
# Environment:
#   SLUICE_TEST_SKIP_INSTALL=1   skip the install step (packages already present)
#   SLUICE_TEST_QUICK=1          skip clippy, the bench smoke run and the browser suite
#   SLUICE_TEST_E2E=0            skip the real-client suite (tests/e2e: Chromium, Firefox, aiortc)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

install_prerequisites() {
    # Rust toolchain: the machine's rustup toolchain (cargo, rustfmt, clippy) is required.
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust with rustup (https://rustup.rs) and re-run" >&2
        exit 1
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            rustup component add "$component"
        fi
    done
    # Debian packages: a C toolchain for aws-lc-sys (the SRTP crypto); python3, iproute2 and
    # ethtool for the tuning tool's tests (its namespace test makes veth pairs); coturn for the
    # TURN REST credential test (control/tests/hybrid_coturn.rs allocates through a real coturn);
    # openssl for the DTLS 1.2 server's test against a real OpenSSL client
    # (rtp-core/tests/dtls12_openssl.rs).
    # redis-server (and redis-cli) for the cluster tests (control/tests/cluster_*.rs and the
    # cluster_* e2e scenarios start their own instance on a Unix socket).
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
    command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    if [ ${#missing[@]} -gt 0 ]; then
        if command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
        else
            echo "missing ${missing[*]} and no apt-get: install them and re-run" >&2
            exit 1
        fi
    fi
}

if [ "${SLUICE_TEST_SKIP_INSTALL:-0}" != 1 ]; then
    step "installing prerequisites (idempotent)"
    install_prerequisites
fi

step "cargo fmt --check"
cargo fmt --all -- --check

if [ "${SLUICE_TEST_QUICK:-0}" != 1 ]; then
    step "cargo clippy --all-targets (warnings are errors)"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

step "cargo test --workspace"
cargo test --workspace --locked

step "tuning tool tests (python unittest)"
python3 -m unittest discover -s tuning/tests

if [ "${SLUICE_TEST_QUICK:-0}" != 1 ] && [ "${SLUICE_TEST_E2E:-1}" != 0 ]; then
    step "end to end with real clients: Chromium, Firefox ESR, aiortc (tests/e2e)"
    # installs chromium, firefox-esr, the npm drivers and the aiortc venv first (idempotent)
    SLUICE_E2E_SKIP_INSTALL="${SLUICE_TEST_SKIP_INSTALL:-0}" ./tests/e2e/run.sh
fi

if [ "${SLUICE_TEST_QUICK:-0}" != 1 ]; then
    step "sluice-bench micro smoke run (release)"
    cargo run --release --locked -p bench --bin sluice-bench -- micro --quick --json >/dev/null
fi

step "all tests passed"
