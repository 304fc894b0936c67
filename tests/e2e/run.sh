#!/usr/bin/env bash
# The real-client end-to-end suite: Chromium, Firefox and aiortc through a real `sluice up`.
# Installs what it needs (install.sh, idempotent), builds the binaries unless SLUICE_BIN is set,
# runs every scenario (or those named as arguments) one at a time and prints a summary table.
# Exits non-zero when any scenario fails. Target: well under 10 minutes on 2 cores.
#
# Environment:
#   SLUICE_BIN          the sluice binary (default target/debug/sluice, built here)
#   SLUICE_NETEM_BIN    the impairment relay (default target/debug/sluice-netem, built here)
#   SLUICE_E2E_SKIP_INSTALL=1   skip install.sh
#   SLUICE_E2E_FANOUT   subscriber pages in the fan-out scenario (default 4)
#   SLUICE_E2E_SCENARIO_TIMEOUT  seconds per scenario (default 90; a scenario may ask for more
#                                with `fn.timeoutS`: cluster_race 180, cluster_failover 300)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ "${SLUICE_E2E_SKIP_INSTALL:-0}" != 1 ]; then
    "$here/install.sh"
fi

if [ -z "${SLUICE_BIN:-}" ]; then
    (cd "$root" && cargo build --locked -q -p sluice-control --bin sluice \
        && cargo build --locked -q -p sluice-dataplane --bin sluice-dataplane \
        && cargo build --locked -q -p sluice-tests --bin sluice-netem)
fi

cd "$here"
exec node run.mjs "$@"
