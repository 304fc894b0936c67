#!/usr/bin/python3
"""GStreamer webrtcbin as a Sluice peer over WHIP (publish) and WHEP (play), for the e2e suite.

    /usr/bin/python3 gst_client.py whip --url http://127.0.0.1:P/whip/ROOM --token T \
        --video vp8|h264 [--ssrc] --seconds 25
    /usr/bin/python3 gst_client.py whep --url http://127.0.0.1:P/whep/ROOM --token T --seconds 25 \
        [--frames N] [--repeat N]

Debian's GStreamer 1.22 (webrtcbin from plugins-bad, libnice, x264enc from plugins-ugly, avdec_h264
from libav) driven through GObject introspection: run it with Debian's /usr/bin/python3, where
`gi` lives (shared/testing-notes.md, "GStreamer webrtcbin"). webrtcbin keeps its default DTLS
certificate (OpenSSL, RSA-2048). The HTTP is urllib, never libsoup.

Prints one JSON line: what was sent or decoded, the arrival time (ms, monotonic) of every
decoded video frame (`video_times_ms`, for tests/e2e/lib/continuity.mjs), the offer's and the
answer's facts, the DTLS and SRTP parameters read from webrtcbin's own elements, Location and the
DELETE status. Exits non-zero on error, still printing a JSON line with "error".

`--seconds` counts from the connection (CONNECTED): the client ends that long after it.
`--frames N` ends a WHEP player as soon as it decoded N video frames (instead of waiting out
`--seconds`); `--repeat N` plays N times in a row in this one process, each a new webrtcbin (new
ICE agent and sockets, so a new source port), and reports each run under "runs".
`--bad-fingerprint` (WHIP) changes one byte of the offer's a=fingerprint: the server must refuse
the DTLS handshake.

Loopback only: libnice gathers no 127.0.0.1 candidate by itself, so the agent gets
add_local_address(127.0.0.1) and nothing else; UPnP (multicast discovery on the real interface)
and ICE-TCP are off.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

Gst.init(None)

VIDEO_FPS = 30
# Fixed SSRCs for the signalled case; the unsignalled case lets the payloaders pick.
SSRC = {"video": 0x5EED0001, "audio": 0x5EED0002}
# Objects whose Python wrappers must outlive the pipeline (see loopback_agent).
KEEP = []


def now_ms():
    return time.monotonic() * 1000.0


def http(method, url, token, body=None):
    """Blocking HTTP; returns (status, headers, text)."""
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/sdp")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, dict(res.headers), res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def loopback_agent(webrtc):
    """127.0.0.1 as the only local address, UPnP and ICE-TCP off.

    GStreamer 1.22: reading `ice-agent` from Python can leave the wrapper holding webrtcbin's
    only reference (a crash at teardown); take one more when that happened."""
    ice = webrtc.get_property("ice-agent")
    if ice.__grefcount__ <= 1:
        ice.ref()
    KEEP.append(ice)
    ice.set_property("ice-tcp", False)
    agent = ice.get_property("agent")
    KEEP.append(agent)
    agent.set_property("upnp", False)
    addr = Nice.Address.new()
    addr.set_from_string("127.0.0.1")
    agent.add_local_address(addr)


def transceivers(webrtc):
    """webrtcbin's transceivers (1.22's `get-transceivers` returns a GArray Python cannot walk)."""
    out = []
    while True:
        t = webrtc.emit("get-transceiver", len(out))
        if t is None:
            return out
        out.append(t)


def elements(bin_, factory):
    """Every element made by `factory` inside `bin_` (recursively)."""
    out = []
    it = bin_.iterate_recurse()
    while True:
        res, el = it.next()
        if res != Gst.IteratorResult.OK:
            break
        f = el.get_factory()
        if f is not None and f.get_name() == factory:
            out.append(el)
    return out


def cert_type(pem):
    """`RSA-2048`, `ECDSA P-256`… of a PEM certificate, read by openssl(1)."""
    if not pem:
        return None
    try:
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(),
                              capture_output=True, timeout=5).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    if "rsaEncryption" in text:
        return f"RSA-{bits.group(1) if bits else '?'}"
    if "id-ecPublicKey" in text:
        curve = re.search(r"NIST CURVE: (\S+)", text)
        return f"ECDSA {curve.group(1) if curve else '?'}"
    return "other"


def transport_facts(webrtc):
    """DTLS certificate type and SRTP profile as webrtcbin's own elements report them."""
    facts = {"dtls_version": "DTLS 1.2 (OpenSSL DTLS_method; GStreamer 1.22 has no DTLS 1.3)"}
    for t in transceivers(webrtc):
        tr = t.get_property("sender").get_property("transport") or t.get_property("receiver").get_property("transport")
        if tr is None:
            continue
        facts["dtls_state"] = tr.get_property("state").value_nick
        facts["cert"] = cert_type(tr.get_property("certificate"))
        facts["remote_cert"] = cert_type(tr.get_property("remote-certificate"))
        break
    if facts.get("dtls_state") != "connected":
        return facts
    for enc in elements(webrtc, "srtpenc"):
        cipher = enc.get_property("rtp-cipher").value_nick
        auth = enc.get_property("rtp-auth").value_nick
        if cipher != "null":
            facts["srtp"] = {
                ("aes-128-icm", "hmac-sha1-80"): "SRTP_AES128_CM_HMAC_SHA1_80",
                ("aes-128-icm", "hmac-sha1-32"): "SRTP_AES128_CM_HMAC_SHA1_32",
                ("aes-128-gcm", "null"): "SRTP_AEAD_AES_128_GCM",
                ("aes-256-gcm", "null"): "SRTP_AEAD_AES_256_GCM",
            }.get((cipher, auth), f"{cipher}/{auth}")
            break
    return facts


def sdp_facts(text, prefix):
    """What an SDP says about codecs, SSRCs and feedback, for the interop matrix."""
    codecs = sorted({m.group(1) for m in re.finditer(r"a=rtpmap:\d+ ([A-Za-z0-9-]+)/", text)} - {"rtx"})
    fb = sorted({m.group(1) for m in re.finditer(r"a=rtcp-fb:\S+ ([a-z-]+)", text)})
    ext = [u for u in ("transport-wide-cc", "abs-send-time", "sdes:mid") if u in text]
    return {
        f"{prefix}_codecs": codecs,
        f"{prefix}_rtcp_fb": fb,
        f"{prefix}_extmaps": ext,
        f"{prefix}_ssrc_lines": len(re.findall(r"^a=ssrc:", text, re.M)),
    }


def ecdsa_pem():
    """A fresh self-signed ECDSA P-256 certificate and its key, PEM, from openssl(1)."""
    key = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                         capture_output=True, check=True, text=True).stdout
    cert = subprocess.run(["openssl", "req", "-new", "-x509", "-key", "/dev/stdin", "-subj", "/CN=gst",
                           "-days", "2"], input=key, capture_output=True, check=True, text=True).stdout
    return cert + key


def pem_fingerprint(pem):
    """The SDP fingerprint (sha-256) of the certificate in `pem`."""
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem,
                         capture_output=True, check=True, text=True).stdout
    return out.strip().split("=", 1)[1]


class Peer:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.Pipeline.new("peer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        loopback_agent(self.webrtc)
        # SLUICE_GST_CERT=ecdsa: webrtcbin with an ECDSA P-256 certificate instead of its default
        # RSA-2048 one, and the offer's a=fingerprint fixed up to match it. Only for runs against
        # builds from before issue 20, which refused RSA client certificates: with it, the
        # SSRC-less and codec-order defects can be shown on their own.
        self.pem = ecdsa_pem() if os.environ.get("SLUICE_GST_CERT") == "ecdsa" else None
        if self.pem is not None:
            def added(_bin, _sub, element):
                factory = element.get_factory()
                if factory is not None and factory.get_name() in ("dtlssrtpdec", "dtlsdec"):
                    element.set_property("pem", self.pem)
            self.pipe.connect("deep-element-added", added)
        self.result = {"gstreamer": Gst.version_string()}
        self.error = None
        self.resource = None
        self.offer_text = None
        self.connected_at = None
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)

    def on_bus_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(f"{err.message} ({dbg})")

    def fail(self, why):
        if self.error is None:
            self.error = why
        GLib.idle_add(self.loop.quit)

    def parse_launch(self, desc):
        b = Gst.parse_bin_from_description(desc, False)
        self.pipe.add(b)
        return b

    def link_to_webrtc(self, b, src_name):
        src = b.get_by_name(src_name).get_static_pad("src")
        ghost = Gst.GhostPad.new("src", src)
        b.add_pad(ghost)
        sink = self.webrtc.request_pad_simple("sink_%u")
        if ghost.link(sink) != Gst.PadLinkReturn.OK:
            raise RuntimeError(f"cannot link {src_name} to webrtcbin")

    def negotiate(self):
        """Offer, wait for gathering, POST, apply the answer (all from webrtcbin's threads)."""
        def on_offer(promise, _):
            reply = promise.get_reply()
            offer = reply.get_value("offer")
            p = Gst.Promise.new()
            self.webrtc.emit("set-local-description", offer, p)
            p.interrupt()

        def gathered(*_):
            if self.webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                return
            if self.offer_text is not None:
                return
            self.offer_text = self.webrtc.get_property("local-description").sdp.as_text()
            threading.Thread(target=self.post, daemon=True).start()

        self.webrtc.connect("notify::ice-gathering-state", gathered)
        promise = Gst.Promise.new_with_change_func(on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def post(self):
        if self.pem is not None:
            self.offer_text = re.sub(r"a=fingerprint:\S+ [0-9A-Fa-f:]+",
                                     "a=fingerprint:sha-256 " + pem_fingerprint(self.pem), self.offer_text)
        if getattr(self.args, "bad_fingerprint", False):
            # The last hex byte of every a=fingerprint, flipped.
            self.offer_text = re.sub(
                r"(a=fingerprint:\S+ [0-9A-Fa-f:]+:)([0-9A-Fa-f]{2})",
                lambda m: m.group(1) + f"{int(m.group(2), 16) ^ 0xFF:02X}",
                self.offer_text)
        if getattr(self.args, "ssrc", True) is False:
            # The unsignalled case (a client that names no SSRC): webrtcbin sometimes writes the
            # payloader's SSRC, sometimes not; take it out so the run is always the case tested.
            self.offer_text = "".join(
                line for line in self.offer_text.splitlines(keepends=True)
                if not line.startswith(("a=ssrc:", "a=ssrc-group:")))
        status, headers, text = http("POST", self.args.url, self.args.token, self.offer_text)
        self.result.update(sdp_facts(self.offer_text, "offer"))
        self.result["post_status"] = status
        if status != 201:
            self.result["post_body"] = text[:400]
            self.fail(f"POST {self.args.url}: HTTP {status}: {text[:300]}")
            return
        self.result.update(sdp_facts(text, "answer"))
        self.result["answer_sprop"] = "sprop-" in text
        loc = headers.get("Location") or headers.get("location")
        self.resource = urllib.parse.urljoin(self.args.url, loc) if loc else None
        if os.environ.get("SLUICE_E2E_GST_SDP"):
            with open(os.environ["SLUICE_E2E_GST_SDP"], "a") as f:
                f.write(f"--- offer\n{self.offer_text}\n--- answer\n{text}\n")
        ok, sdp = GstSdp.SDPMessage.new_from_text(text)
        if ok != GstSdp.SDPResult.OK:
            self.fail("answer does not parse")
            return
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        p = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", answer, p)
        p.interrupt()

    def watch_connection(self):
        def changed(*_):
            state = self.webrtc.get_property("connection-state")
            if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and self.connected_at is None:
                self.connected_at = now_ms()
                # `--seconds` counts from here: end then, not at the connect timeout's backstop
                # (which kept every client ~10 s past its window).
                GLib.timeout_add(int(self.args.seconds * 1000) + 1, self.finish_soon)
            elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
                self.fail("peer connection failed")
        self.webrtc.connect("notify::connection-state", changed)

    def run(self, seconds, connect_timeout=10):
        self.watch_connection()
        self.started = now_ms()
        self.pipe.set_state(Gst.State.PLAYING)

        def check_connected():
            if self.connected_at is None:
                self.result["connection_state"] = self.webrtc.get_property("connection-state").value_nick
                self.fail(f"not connected after {connect_timeout} s "
                          f"(connection-state {self.result['connection_state']})")
            return False

        GLib.timeout_add(int(connect_timeout * 1000), check_connected)
        # The backstop: a client whose connection-state notice never came ends here.
        GLib.timeout_add(int((seconds + connect_timeout) * 1000), self.finish_soon)
        self.loop.run()

    def finish_soon(self):
        if self.connected_at is not None and now_ms() - self.connected_at < self.args.seconds * 1000:
            GLib.timeout_add(int(self.args.seconds * 1000 - (now_ms() - self.connected_at)) + 1, self.finish_soon)
            return False
        self.loop.quit()
        return False

    def close(self):
        self.result.update(transport_facts(self.webrtc))
        self.result["connect_ms"] = round(self.connected_at - self.started) if self.connected_at else None
        self.result["resource"] = self.resource
        self.result["delete_status"] = http("DELETE", self.resource, self.args.token)[0] if self.resource else None
        self.pipe.set_state(Gst.State.NULL)


def whip(args):
    peer = Peer(args)
    ssrc = lambda kind: f",ssrc=(uint){SSRC[kind]}" if args.ssrc else ""  # noqa: E731
    if args.video == "vp8":
        enc = ("vp8enc deadline=1 target-bitrate=600000 keyframe-max-dist=60 ! rtpvp8pay picture-id-mode=15-bit pt=96 "
               f"! application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96{ssrc('video')}")
    else:
        enc = ("x264enc tune=zerolatency speed-preset=ultrafast bitrate=600 key-int-max=60 "
               "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=102 "
               f"! application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=102{ssrc('video')}")
    video = peer.parse_launch(
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate={VIDEO_FPS}/1 "
        f"! videoconvert ! queue ! {enc} ! identity name=vout")
    # encoding-params=2: without it the offer says OPUS/48000 (one channel), which is not Opus.
    audio = peer.parse_launch(
        "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc "
        "! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,"
        f"encoding-params=(string)2,payload=111{ssrc('audio')} ! identity name=aout")
    peer.link_to_webrtc(video, "vout")
    peer.link_to_webrtc(audio, "aout")
    sent = {"video": 0, "audio": 0}
    for name, b in (("video", video), ("audio", audio)):
        def count(_pad, info, kind=name):
            sent[kind] += 1
            return Gst.PadProbeReturn.OK
        b.get_by_name("vout" if name == "video" else "aout").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, count)
    for t in transceivers(peer.webrtc):
        t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    peer.webrtc.connect("on-negotiation-needed", lambda *_: peer.negotiate())
    peer.run(args.seconds)
    peer.close()
    peer.result.update({"mode": "whip", "video": args.video, "signalled_ssrc": args.ssrc,
                        "packets_sent": sent, "sender_fps": VIDEO_FPS})
    return peer


def whep(args):
    peer = Peer(args)
    video_caps = Gst.Caps.from_string(
        "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96;"
        "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=102,"
        "packetization-mode=(string)1,profile-level-id=(string)42e01f")
    audio_caps = Gst.Caps.from_string(
        "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,encoding-params=(string)2,payload=111")
    recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
    peer.webrtc.emit("add-transceiver", recv, video_caps)
    peer.webrtc.emit("add-transceiver", recv, audio_caps)
    times = []
    audio = {"frames": 0}
    codecs = {}

    def decoded(kind):
        def probe(_pad, _info):
            if kind == "video":
                times.append(now_ms())
                if args.frames and len(times) == args.frames:
                    GLib.idle_add(peer.loop.quit)
            else:
                audio["frames"] += 1
            return Gst.PadProbeReturn.OK
        return probe

    def on_pad(_w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps().get_structure(0)
        kind = caps.get_string("media")
        codecs[kind] = caps.get_string("encoding-name")
        b = peer.parse_launch("decodebin name=dec ! queue ! fakesink name=out sync=false async=false")
        b.sync_state_with_parent()
        dec = b.get_by_name("dec")
        ghost = Gst.GhostPad.new("sink", dec.get_static_pad("sink"))
        b.add_pad(ghost)
        pad.link(ghost)
        b.get_by_name("out").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, decoded(kind))

    peer.webrtc.connect("pad-added", on_pad)
    peer.webrtc.connect("on-negotiation-needed", lambda *_: peer.negotiate())
    peer.run(args.seconds)
    peer.close()
    peer.result.update({
        "mode": "whep",
        "video_frames": len(times),
        "audio_frames": audio["frames"],
        "codecs": codecs,
        "video_times_ms": [round(t, 1) for t in times],
    })
    return peer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["whip", "whep"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--video", choices=["vp8", "h264"], default="vp8")
    parser.add_argument("--ssrc", action="store_true", help="signal a=ssrc (fixed payloader SSRCs)")
    parser.add_argument("--bad-fingerprint", action="store_true", help="WHIP: spoil the offer's fingerprint")
    parser.add_argument("--frames", type=int, default=0, help="WHEP: stop once this many frames decoded")
    parser.add_argument("--repeat", type=int, default=1, help="WHEP: this many players in a row")
    args = parser.parse_args()
    host = urllib.parse.urlparse(args.url).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing a non-loopback URL (tests stay on 127.0.0.1)")
    if args.repeat > 1:
        repeat(args)
        return
    peer = None
    try:
        peer = (whip if args.mode == "whip" else whep)(args)
    except Exception as e:  # one JSON line either way
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
    if peer.error:
        peer.result["error"] = peer.error
        print(json.dumps(peer.result))
        sys.exit(1)
    print(json.dumps(peer.result))


def repeat(args):
    """`args.repeat` WHEP players one after another; stops at the first that fails."""
    if args.mode != "whep":
        sys.exit("--repeat is for whep")
    runs = []
    t0 = now_ms()
    for i in range(args.repeat):
        start = now_ms()
        try:
            peer = whep(args)
        except Exception as e:
            runs.append({"error": f"{type(e).__name__}: {e}"})
            break
        r = {k: peer.result.get(k) for k in ("video_frames", "audio_frames", "connect_ms", "codecs", "delete_status", "srtp", "cert")}
        r["ms"] = round(now_ms() - start)
        if peer.error:
            r["error"] = peer.error
        runs.append(r)
        if peer.error:
            break
    out = {"mode": "whep", "repeat": args.repeat, "runs": runs, "ms": round(now_ms() - t0),
           "gstreamer": Gst.version_string()}
    failed = [r for r in runs if r.get("error")]
    if failed:
        out["error"] = f"player {len(runs)}/{args.repeat}: {failed[0]['error']}"
    print(json.dumps(out))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
