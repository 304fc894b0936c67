#!/usr/bin/env bash
# Installs what `sluice-bench compare --peer janus` needs, idempotently (a second run installs
# nothing): Janus (Debian `janus`, 1.1.2 on Debian 12; the package starts no service — the
# bench starts its own Janus in a network namespace, see docs/performance.md) and the tools the
# namespace set-up uses (iproute2 for `ip netns`, util-linux for `taskset`).
set -euo pipefail
missing=()
command -v janus >/dev/null 2>&1 || missing+=(janus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
janus --version 2>/dev/null | head -1 || true
