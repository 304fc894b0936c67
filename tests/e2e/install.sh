#!/usr/bin/env bash
# Installs what the e2e suite needs, idempotently (a second run installs nothing):
# Debian chromium + firefox-esr, the npm drivers from package-lock.json (no browser download),
# and a Python venv with aiortc. Nothing downloaded is committed.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v patch >/dev/null 2>&1 || missing+=(patch)
# The ICE-TCP scenarios drop UDP with nftables inside a namespace of their own (unshare -n).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# The TURN/TLS scenarios run a real coturn and trust its throw-away CA in Firefox's profile.
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
# GStreamer webrtcbin driven from Debian's python3 through GObject introspection (gst_client.py):
# webrtcbin + libnice (bad, nice), VP8/Opus (good, base), x264enc (ugly), avdec_h264 (libav).
gst_pkgs=(python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
    gir1.2-nice-0.1 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-libav)
for p in "${gst_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# npm ci only when nothing is installed yet or the lock file is newer than npm's own record of
# the last install (node_modules/.package-lock.json).
if ! [ node_modules/.package-lock.json -nt package-lock.json ]; then
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

if ! .venv/bin/python -c 'import aiortc' >/dev/null 2>&1; then
    python3 -m venv .venv
    .venv/bin/pip install -q -r requirements.txt
fi
