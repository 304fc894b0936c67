"""aiortc as a Sluice peer over WHIP (publish) and WHEP (play), for the e2e scenarios.

    python aiortc_client.py whip --url http://127.0.0.1:P/whip/ROOM --token T --seconds 10
    python aiortc_client.py whep --url http://127.0.0.1:P/whep/ROOM --token T --seconds 6

Prints one JSON line: what was sent or decoded (frames, sizes, codecs), the resource URL from
Location and the DELETE status. A player also reports the arrival time of every decoded video
frame (`video_times_ms`, ms on one monotonic clock) and the end of its window
(`window_end_ms`), so the harness can check continuity (tests/e2e/lib/continuity.mjs
`fromFrameTimes`); a publisher states its frame rate (`video_fps`: aiortc's VideoStreamTrack
produces 30 frames a second). Exits non-zero on error. SLUICE_E2E_AIORTC_LOG=FILE writes
aiortc's debug log there, with the offer and the answer.
aioice leaves loopback out of its host candidates, and every test address here is 127.0.0.1, so
the host address list is patched to loopback only (shared/testing-notes.md).
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
import aiortc
from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import VIDEO_PTIME, MediaStreamError


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def loopback_only(use_ipv4=True, use_ipv6=True):
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_only


def http(method, url, token, body=None, content_type="application/sdp"):
    """A blocking HTTP request (run in a thread); returns (status, headers, text)."""
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, dict(res.headers), res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


MAX_REDIRECTS = 2


async def negotiate(pc, url, token, redirects):
    """Offers (aiortc gathers before returning), POSTs, applies the 201 answer. A 307/308 (a
    cluster node that is not the room's home, RFC 9725 §4.5) is followed, at most MAX_REDIRECTS
    times, each target appended to `redirects`."""
    await pc.setLocalDescription(await pc.createOffer())
    while True:
        status, headers, text = await asyncio.to_thread(http, "POST", url, token, pc.localDescription.sdp)
        location = headers.get("Location") or headers.get("location")
        if status not in (307, 308) or not location:
            break
        if len(redirects) >= MAX_REDIRECTS:
            raise RuntimeError(f"too many redirects: {redirects}")
        url = urllib.parse.urljoin(url, location)
        if urllib.parse.urlparse(url).hostname not in LOOPBACK:
            raise RuntimeError(f"refusing a redirect off loopback: {url}")
        redirects.append(url)
    if status != 201:
        raise RuntimeError(f"POST {url}: HTTP {status}: {text[:300]}")
    logging.getLogger("sluice-e2e").debug("offer:\n%s\nanswer:\n%s", pc.localDescription.sdp, text)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    location = headers.get("Location") or headers.get("location")
    return urllib.parse.urljoin(url, location) if location else None


def codecs_of(pc, kind):
    for t in pc.getTransceivers():
        if t.kind == kind and t._codecs:
            return t._codecs[0].mimeType
    return None


def transport_facts(pc):
    """The negotiated DTLS version, cipher and SRTP profile, read from aiortc's OpenSSL session."""
    for t in pc.getTransceivers():
        dtls = t.sender.transport or t.receiver.transport
        ssl = getattr(dtls, "_ssl", None)
        if ssl is None:
            continue
        try:
            profile = ssl.get_selected_srtp_profile()
            return {
                "tls": ssl.get_protocol_version_name(),
                "cipher": ssl.get_cipher_name(),
                "srtp": profile.decode() if isinstance(profile, bytes) else profile,
            }
        except Exception as e:  # facts are for the interop table; never fail the run on them
            return {"facts_error": str(e)}
    return {}


async def whip(args):
    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    redirects = []
    resource = await negotiate(pc, args.url, args.token, redirects)
    deadline = time.monotonic() + 10
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if pc.connectionState != "connected":
        raise RuntimeError(f"WHIP connection state {pc.connectionState}")
    await asyncio.sleep(args.seconds)
    facts = transport_facts(pc)
    sent = {}
    for report in (await pc.getStats()).values():
        if report.type == "outbound-rtp":
            sent[report.kind] = report.packetsSent
    deleted = (await asyncio.to_thread(http, "DELETE", resource, args.token))[0] if resource else None
    await pc.close()
    return {
        "version": aiortc.__version__,
        "resource": resource,
        "redirects": redirects,
        "delete_status": deleted,
        "video_fps": round(1 / VIDEO_PTIME),
        "packets_sent": sent,
        "codecs": " + ".join(filter(None, [codecs_of(pc, "video"), codecs_of(pc, "audio")])),
        **facts,
    }


async def whep(args):
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    counts = {"video": 0, "audio": 0}
    size = {}
    # Arrival time (ms, monotonic) of every decoded video frame, for continuity.mjs.
    times = []

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            counts[track.kind] += 1
            if track.kind == "video":
                times.append(round(time.monotonic() * 1000, 1))
                size["width"], size["height"] = frame.width, frame.height

    tasks = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    redirects = []
    resource = await negotiate(pc, args.url, args.token, redirects)
    await asyncio.sleep(args.seconds)
    window_end = round(time.monotonic() * 1000, 1)
    facts = transport_facts(pc)
    codecs = " + ".join(filter(None, [codecs_of(pc, "video"), codecs_of(pc, "audio")]))
    deleted = (await asyncio.to_thread(http, "DELETE", resource, args.token))[0] if resource else None
    await pc.close()
    for t in tasks:
        t.cancel()
    return {
        "version": aiortc.__version__,
        "resource": resource,
        "redirects": redirects,
        "delete_status": deleted,
        "video_frames": counts["video"],
        "audio_frames": counts["audio"],
        "video_times_ms": times,
        "window_end_ms": window_end,
        "codecs": codecs,
        **size,
        **facts,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["whip", "whep"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    if os.environ.get("SLUICE_E2E_AIORTC_LOG"):
        logging.basicConfig(filename=os.environ["SLUICE_E2E_AIORTC_LOG"], level=logging.DEBUG)
    host = urllib.parse.urlparse(args.url).hostname
    if host not in LOOPBACK:
        sys.exit("refusing a non-loopback URL (tests stay on 127.0.0.1)")
    try:
        result = asyncio.run(asyncio.wait_for((whip if args.mode == "whip" else whep)(args), args.seconds + 20))
    except Exception as e:  # one JSON line either way, so the harness can show it
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
