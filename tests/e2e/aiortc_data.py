"""aiortc as a data-channel peer of Sluice (issue 17), over a data-only WHIP session.

    python aiortc_data.py --url http://127.0.0.1:P/whip/ROOM --token T --count 1000 --peer alice

Opens `_reliable` (ordered) and `_lossy` (unordered, maxRetransmits 0) in a WHIP offer that has
no media, prints `{"open": true}` once both are open, then waits for a line `go` on stdin
(so the harness starts both peers' senders only when every receiver's channel is open: the
server drops what it cannot deliver). It then sends `--count` numbered messages on each channel
to the room — text `{"n": i, "t": <ms, wall clock>}` in Sluice's envelope `[1][0]` — paced under
the server's per-sender rate limit, and collects what arrives until `--count` reliable messages
from `--peer` are in or `--seconds` pass. Prints one JSON line: per channel the sequence numbers
received (in arrival order), the sender identities seen and the one-way latencies (ms).
aiortc has its own SCTP (aiortc/rtcsctptransport.py): this is the third independent stack.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse

import aiortc
from aiortc import RTCPeerConnection

from aiortc_client import http, negotiate  # noqa: F401 (patches aioice to loopback too)


def now_ms():
    return time.time() * 1000


def parse(raw):
    """`(sender, payload)` of a server envelope `[1][len][sender]` + payload, or None."""
    if isinstance(raw, str):
        if len(raw) < 2 or ord(raw[0]) != 1:
            return None
        n = ord(raw[1])
        return (raw[2 : 2 + n], raw[2 + n :]) if n and len(raw) >= 2 + n else None
    if len(raw) < 2 or raw[0] != 1:
        return None
    n = raw[1]
    return (raw[2 : 2 + n].decode(), raw[2 + n :].decode()) if n and len(raw) >= 2 + n else None


async def run(args):
    pc = RTCPeerConnection()
    channels = {
        "reliable": pc.createDataChannel("_reliable", ordered=True),
        "lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
    }
    got = {"reliable": [], "lossy": []}
    lat = {"reliable": [], "lossy": []}
    senders = set()
    done = asyncio.Event()

    def on_message(kind):
        def handler(raw):
            m = parse(raw)
            if m is None:
                return
            sender, payload = m
            try:
                body = json.loads(payload)
            except ValueError:
                return
            senders.add(sender)
            if sender != args.peer:
                return
            got[kind].append(body["n"])
            lat[kind].append(round(now_ms() - body["t"], 2))
            if len(got["reliable"]) >= args.count:
                done.set()

        return handler

    for kind, ch in channels.items():
        ch.on("message", on_message(kind))
    resource = await negotiate(pc, args.url, args.token, [])
    deadline = time.monotonic() + 15
    while any(c.readyState != "open" for c in channels.values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"channels not open: {[c.readyState for c in channels.values()]} ({pc.connectionState})")
        await asyncio.sleep(0.05)
    print(json.dumps({"open": True}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise RuntimeError(f"expected go, got {line!r}")
    for i in range(args.count):
        for kind, ch in channels.items():
            ch.send("\x01\x00" + json.dumps({"n": i, "t": now_ms()}))
        # 4 pairs per 10 ms: at most 800 messages a second (the server allows 1,000).
        if i % 4 == 3:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(done.wait(), args.seconds)
    except asyncio.TimeoutError:
        pass
    # The lossy stragglers of the last burst.
    await asyncio.sleep(0.5)
    deleted = (await asyncio.to_thread(http, "DELETE", resource, args.token))[0] if resource else None
    await pc.close()
    return {
        "version": aiortc.__version__,
        "received": got,
        "latency_ms": lat,
        "senders": sorted(senders),
        "delete_status": deleted,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    host = urllib.parse.urlparse(args.url).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing a non-loopback URL (tests stay on 127.0.0.1)")
    try:
        result = asyncio.run(asyncio.wait_for(run(args), args.seconds + 40))
    except Exception as e:  # one JSON line either way, so the harness can show it
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        sys.exit(1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
