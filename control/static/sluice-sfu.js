// The SFU path of the browser client (docs/protocol.md "Why two PeerConnections
// per client"): the publisher PC (we
// offer, the server answers; sendonly) and the subscriber PC (the server offers, we answer;
// recvonly), each negotiating one offer/answer at a time; remote tracks matched to their track
// sids from the subscriber offer's SDP; the data channels on the publisher PC; E2EE transforms on
// senders and receivers; and the SDP helpers. Functions take the Room's internals `s`
// (sluice-room.js `internals`), whose `room` is the Room itself.

import { DataLink } from './sluice-data.js';
import { onIceState } from './sluice-ice.js';

/**
 * Per m= section of an SDP: mid, kind and msid (stream id, track id). The subscriber offer names
 * each forwarded track in `a=msid:<participant> <track sid>`; browsers differ in whether they
 * expose that as `MediaStreamTrack.id`, so we read it from the SDP ourselves.
 */
export function parseSections(sdp) {
  const out = [];
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      cur = { kind: line.slice(2).split(' ')[0], mid: null, streamId: null, trackId: null };
      out.push(cur);
    } else if (cur && line.startsWith('a=mid:')) {
      cur.mid = line.slice(6).trim();
    } else if (cur && line.startsWith('a=msid:')) {
      const [streamId, trackId] = line.slice(7).trim().split(' ');
      cur.streamId = streamId;
      cur.trackId = trackId ?? null;
    }
  }
  return out;
}

/**
 * Replaces every `a=candidate` of a remote SDP with one host candidate at `addr` ("ip:port").
 * Tests use it to put the impairment relay between the browser and the server; the ICE-lite
 * server learns the relay's address from the checks, so nothing else has to change.
 */
export function rewriteCandidates(sdp, addr) {
  const i = addr.lastIndexOf(':');
  const ip = addr.slice(0, i);
  const port = addr.slice(i + 1);
  const lines = sdp.split('\r\n');
  const out = [];
  let sectionHasCandidate = false;
  for (const line of lines) {
    if (line.startsWith('m=')) sectionHasCandidate = false;
    if (line.startsWith('a=candidate:')) {
      if (sectionHasCandidate) continue;
      sectionHasCandidate = true;
      out.push(`a=candidate:1 1 udp 2130706431 ${ip} ${port} typ host`);
      continue;
    }
    out.push(line);
  }
  return out.join('\r\n');
}

function remoteSdp(s, sdp) {
  return s.opts.relay ? rewriteCandidates(sdp, s.opts.relay) : sdp;
}

/** Fresh publisher and subscriber PCs (no data channels until the first publisher offer). */
export function openSfuPcs(s) {
  s.data = null;
  s.pub = newPc(s, 'publisher');
  s.sub = newPc(s, 'subscriber');
  s.sub.ontrack = (ev) => onTrack(s, ev);
}

function newPc(s, name) {
  const pc = new RTCPeerConnection(s.pcConfig);
  pc.onicecandidate = (ev) => {
    const c = ev.candidate;
    s.sig.send({
      type: 'trickle',
      pc: name,
      candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null,
    });
  };
  pc.oniceconnectionstatechange = () => onIceState(s, name, pc);
  return pc;
}

/**
 * Closes both SFU PCs (the server ends their dataplane sessions once the room is P2P) and opens
 * fresh ones for a later return to SFU. Publications stay published; only their SFU senders go.
 */
export function closeSfu(s) {
  s.sfuLive = false;
  for (const sid of [...s.room.subscriptions.keys()]) dropSubscription(s, sid);
  s.pub?.close();
  s.sub?.close();
  for (const pubn of s.room.publications.values()) {
    pubn.sender = null;
    pubn.transceiver = null;
  }
  s.sections = [];
  openSfuPcs(s);
}

// ---- publisher ------------------------------------------------------------------------------

/** Adds `track` to the publisher PC (simulcast `layers`, preferred `codec`, E2EE); no offer yet. */
export function addPubTransceiver(s, track, stream, layers, codec) {
  const transceiver = s.pub.addTransceiver(track, {
    direction: 'sendonly',
    streams: [stream],
    ...(layers
      ? {
          sendEncodings: layers.map((l) => ({
            rid: l.rid,
            scaleResolutionDownBy: l.scaleResolutionDownBy ?? 1,
            ...(l.maxBitrate ? { maxBitrate: l.maxBitrate } : {}),
          })),
        }
      : {}),
  });
  if (s.e2ee) attachE2ee(s, transceiver.sender, 'encrypt');
  preferCodec(transceiver, track.kind, codec);
  return transceiver;
}

function preferCodec(transceiver, kind, codec) {
  if (!codec || !RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities(kind)?.codecs ?? [];
  const want = `${kind}/${codec}`.toLowerCase();
  const first = caps.filter((c) => c.mimeType.toLowerCase() === want);
  if (first.length) transceiver.setCodecPreferences([...first, ...caps.filter((c) => !first.includes(c))]);
}

/** One publisher offer/answer at a time; publishes and restarts queue behind each other. */
export function negotiatePublisher(s, { iceRestart = false } = {}) {
  const run = async () => {
    if (s.closed) return;
    const offer = await s.pub.createOffer(iceRestart ? { iceRestart: true } : {});
    await s.pub.setLocalDescription(offer);
    // A node whose dataplane is starting or restarting refuses the offer as `unavailable`:
    // the same offer is sent again until it is taken (the published tracks stay published).
    const reply = await s.sig.callRetrying(
      { type: 'offer', pc: 'publisher', sdp: s.pub.localDescription.sdp },
      (m) => m.type === 'answer' && m.pc === 'publisher',
      () => !s.closed,
    );
    await s.pub.setRemoteDescription({ type: 'answer', sdp: remoteSdp(s, reply.sdp) });
  };
  const p = s.pubQueue.then(run, run);
  s.pubQueue = p.catch(() => {});
  return p;
}

/** Sends every local publication over the SFU publisher (one offer for all). */
export async function sfuPublish(s) {
  const room = s.room;
  let added = false;
  if (s.opts.data && !s.data) {
    s.data = new DataLink(s.pub, {
      onMessage: (m) => room.emit('data', { ...m, participant: byIdentity(room, m.from) }),
      onInput: (m) => room.emit('input', { ...m, via: 'data_channel' }),
      onState: () => {
        if (s.data?.open) room.emit('data_open', {});
      },
    });
    added = true;
  }
  for (const pubn of room.publications.values()) {
    if (pubn.transceiver) continue;
    pubn.transceiver = addPubTransceiver(s, pubn.track, pubn.stream, pubn.layers, pubn.codec);
    pubn.sender = pubn.transceiver.sender;
    added = true;
  }
  if (added) await negotiatePublisher(s);
}

function byIdentity(room, identity) {
  for (const p of room.participants.values()) if (p.identity === identity) return p;
  return null;
}

// ---- subscriber -----------------------------------------------------------------------------

/** The server's subscriber offer: answered in turn; tracks whose section went away are dropped. */
export function onSubscriberOffer(s, sdp) {
  const run = async () => {
    if (s.closed) return;
    const remote = remoteSdp(s, sdp);
    // A subscriber session made anew on another node's dataplane (its edge was lost,
    // docs/decisions.md D106) has another DTLS fingerprint: a fresh PC, not a renegotiation.
    const prev = s.sub.remoteDescription?.sdp;
    if (prev && fingerprintOf(prev) !== fingerprintOf(remote)) {
      for (const sid of [...s.room.subscriptions.keys()]) dropSubscription(s, sid);
      s.sub.close();
      s.sub = newPc(s, 'subscriber');
      s.sub.ontrack = (ev) => onTrack(s, ev);
    }
    const before = new Set(s.room.subscriptions.keys());
    s.sections = parseSections(remote);
    await s.sub.setRemoteDescription({ type: 'offer', sdp: remote });
    const answer = await s.sub.createAnswer();
    await s.sub.setLocalDescription(answer);
    s.sig.send({ type: 'answer', pc: 'subscriber', sdp: s.sub.localDescription.sdp });
    // Tracks whose section went away (port 0 / inactive) are unsubscribed.
    const live = new Set();
    for (const t of s.sub.getTransceivers()) {
      if (t.mid !== null && !t.stopped && t.currentDirection !== 'inactive') live.add(t.mid);
    }
    for (const sid of before) {
      const sub = s.room.subscriptions.get(sid);
      if (sub && !live.has(sub.mid)) dropSubscription(s, sid);
    }
  };
  const p = s.subQueue.then(run, run);
  s.subQueue = p.catch((e) => s.room.emit('error', e));
}

/** The first `a=fingerprint` of an SDP (`<hash> <value>`), or undefined. */
function fingerprintOf(sdp) {
  return /^a=fingerprint:(.+)$/m.exec(sdp)?.[1]?.trim().toLowerCase();
}

function onTrack(s, ev) {
  const room = s.room;
  const mid = ev.transceiver?.mid;
  const section = s.sections.find((x) => x.mid === mid) ?? {};
  // The msid track id is the track sid; fall back to TrackInfo.mid, then the raw id.
  let trackSid = section.trackId;
  let participantSid = section.streamId;
  const known = findTrack(room, (t) => t.sid === trackSid) ?? findTrack(room, (t) => t.mid === mid);
  if (known) {
    trackSid = known.sid;
    participantSid = known.participant_sid ?? participantSid;
  }
  trackSid = trackSid ?? ev.track.id;
  if (s.e2ee) attachE2ee(s, ev.receiver, 'decrypt');
  const sub = { trackSid, track: ev.track, participantSid, mid, receiver: ev.receiver, path: 'sfu' };
  room.subscriptions.set(trackSid, sub);
  const participant = room.participants.get(participantSid);
  if (ev.track.kind === 'audio' && participant) s.audio?.addTrack(participant.identity, 'sfu', ev.track);
  room.emit('track_subscribed', { ...sub, participant, info: known });
}

/** Forgets an SFU subscription (its audio leaves the graph) and says `track_unsubscribed`. */
export function dropSubscription(s, trackSid) {
  const room = s.room;
  const sub = room.subscriptions.get(trackSid);
  if (!sub) return;
  room.subscriptions.delete(trackSid);
  const identity = room.participants.get(sub.participantSid)?.identity;
  if (identity) s.audio?.removeTrack(identity, 'sfu', sub.track.id);
  room.emit('track_unsubscribed', sub);
}

/** The first remote TrackInfo `pred` accepts. */
export function findTrack(room, pred) {
  for (const p of room.participants.values()) {
    for (const t of p.tracks.values()) if (pred(t)) return t;
  }
  return undefined;
}

// ---- E2EE -------------------------------------------------------------------------------------

/** Sets `s.e2ee` up: a worker for RTCRtpScriptTransform, else sluice-e2ee.js on the page. */
export async function setupE2ee(s, passphrase) {
  const counters = { encrypted: 0, decrypted: 0, decryptFailed: 0 };
  if (typeof RTCRtpScriptTransform !== 'undefined') {
    const worker = new Worker(new URL('./sluice-e2ee-worker.js', import.meta.url), { type: 'module' });
    worker.postMessage({ passphrase });
    worker.onmessage = (ev) => {
      if (ev.data?.counters) Object.assign(counters, ev.data.counters);
    };
    s.e2ee = { worker, counters };
  } else {
    const mod = await import('./sluice-e2ee.js');
    s.e2ee = { worker: null, counters, key: await mod.deriveKey(passphrase), mod };
  }
}

function attachE2ee(s, senderOrReceiver, direction) {
  const e = s.e2ee;
  if (e.worker) {
    senderOrReceiver.transform = new RTCRtpScriptTransform(e.worker, { direction });
    return;
  }
  const { readable, writable } = senderOrReceiver.createEncodedStreams();
  readable.pipeThrough(e.mod.frameTransform(e.key, direction, e.counters)).pipeTo(writable).catch(() => {});
}
