// Sluice browser client: a plain ES module (no framework, no build step) speaking the signaling
// protocol v1 (docs/protocol.md): one WebSocket, two RTCPeerConnections — the publisher (we offer,
// the server answers; sendonly) and the subscriber (the server offers, we answer; recvonly). Two
// PCs because each direction then renegotiates on its own: a new remote track never collides with
// a local publish offer (no glare).
//
//   import { Sluice } from './sluice.js';
//   const room = await Sluice.connect('ws://127.0.0.1:7880', token, { autoSubscribe: true });
//   room.on('track_subscribed', ({ track, trackSid, participant }) => ...);
//   await room.publish(cameraTrack, { source: 'camera', simulcast: true });
//
// Events (room.on(name, fn) returns an unsubscribe function): joined, participant_joined,
// participant_left, track_published, track_unpublished, track_subscribed, track_unsubscribed,
// track_muted, role_changed, control_requested, control_granted, control_revoked,
// host_transferred, input, active_speakers, connection_quality, ice_restart, error, disconnected.

const PING_INTERVAL_MS = 5000;
const REPLY_TIMEOUT_MS = 10000;
// How long a PC may sit in ICE `disconnected` before we ask for an ICE restart. Short enough
// that a path change recovers within seconds, long enough to ride out a brief loss burst.
const RESTART_AFTER_MS = 2000;
// Gap between two restarts while the path stays down (each restart re-sends checks).
const RESTART_RETRY_MS = 4000;
// A path that silently stops delivering may stay ICE `connected` in Chromium for 5 s and more
// (its checks must fail for 5 s before it says `disconnected`). So we also watch the selected
// pair's receive counters: browsers check an idle pair every 2.5 s and the server answers, so a
// live path always moves them within this long.
const STALL_AFTER_MS = 3500;
const STALL_CHECK_MS = 1000;

/** Simulcast layers offered by `publish(track, {simulcast: true})`, low to high. */
export const DEFAULT_SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Tiny event emitter: `on` returns the function that removes the listener. */
class Emitter {
  #listeners = new Map();

  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.#listeners.get(name)?.delete(fn);
  }

  once(name, fn) {
    const off = this.on(name, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  emit(name, ev) {
    for (const fn of [...(this.#listeners.get(name) ?? [])]) {
      try {
        fn(ev);
      } catch (e) {
        console.error(`sluice: listener for ${name} threw`, e);
      }
    }
  }
}

/** An error the server returned (`error {code, message, field?}`). */
export class SluiceError extends Error {
  constructor({ code, message, field }) {
    super(`${code}: ${message}${field ? ` (field ${field})` : ''}`);
    this.code = code;
    this.field = field;
  }
}

/**
 * Builds the signaling URL: accepts `ws(s)://host[:port][/rtc]` or `http(s)://…` (the page's own
 * origin, say) and appends `/rtc?access_token=`.
 */
export function signalUrl(url, token) {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (!u.pathname.endsWith('/rtc')) u.pathname = u.pathname.replace(/\/?$/, '/rtc');
  u.searchParams.set('access_token', token);
  return u.toString();
}

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
 * What the selected candidate pair of `pc` has received so far (bytes, check responses and
 * requests) as one comparable string, or null without a selected pair.
 */
async function receivedOnPath(pc) {
  const pairs = new Map();
  let selected = null;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
    if (r.type === 'candidate-pair') pairs.set(r.id, r);
  });
  const pair = pairs.get(selected) ?? [...pairs.values()].find((p) => p.selected || (p.nominated && p.state === 'succeeded'));
  if (!pair) return null;
  return `${pair.bytesReceived ?? '-'}/${pair.responsesReceived ?? '-'}/${pair.requestsReceived ?? '-'}`;
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

export class Room extends Emitter {
  /** Local participant info from `joined` (role updated on `role_changed`). */
  participant = null;
  /** Room info `{name, sid}`. */
  room = null;
  /** Remote participants by sid: `{sid, identity, name, role, tracks: Map<sid, TrackInfo>}`. */
  participants = new Map();
  /** Subscribed remote tracks by track sid: `{trackSid, track, participantSid, mid}`. */
  subscriptions = new Map();
  /** Local publications by track sid: `{trackSid, cid, track, sender, info}`. */
  publications = new Map();
  /** Number of ICE restarts this client asked for. */
  iceRestarts = 0;
  /** Round-trip of the last ping, ms. */
  rtt = null;

  #ws;
  #opts;
  #nextReq = 1;
  #pending = new Map(); // req -> {type, resolve, reject, timer}
  #waiters = []; // {match(msg), resolve}
  #pub;
  #sub;
  #pubQueue = Promise.resolve();
  #subQueue = Promise.resolve();
  #pingTimer = null;
  #restartTimer = null;
  #stallTimer = null;
  // Per PC: the selected pair's receive counters, when they last changed, whether ever seen moving.
  #progress = { publisher: { key: null, since: 0, moved: false }, subscriber: { key: null, since: 0, moved: false } };
  #lastRestart = 0;
  #closed = false;
  #e2ee = null; // {passphrase, key, counters, worker}

  constructor(ws, opts) {
    super();
    this.#ws = ws;
    this.#opts = opts;
  }

  // ---- connection -------------------------------------------------------------------------

  async _start(joined) {
    this.room = joined.room;
    this.participant = joined.participant;
    for (const p of joined.participants ?? []) this.#addParticipant(p);
    const config = {
      iceServers: (joined.ice_servers ?? []).map((s) => ({ ...s })),
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      ...(this.#opts.iceTransportPolicy ? { iceTransportPolicy: this.#opts.iceTransportPolicy } : {}),
    };
    if (this.#opts.e2eeKey) {
      await this.#setupE2ee(this.#opts.e2eeKey);
      // Chromium without RTCRtpScriptTransform needs the PC flag at construction.
      if (!this.#e2ee.worker) config.encodedInsertableStreams = true;
    }
    this.#pub = this.#newPc('publisher', config);
    this.#sub = this.#newPc('subscriber', config);
    this.#sub.ontrack = (ev) => this.#onTrack(ev);
    this.#pingTimer = setInterval(() => this.ping().catch(() => {}), PING_INTERVAL_MS);
    if (this.#opts.autoRestart !== false) {
      this.#stallTimer = setInterval(() => this.#checkStall().catch(() => {}), STALL_CHECK_MS);
    }
    this.emit('joined', { room: this.room, participant: this.participant });
  }

  #newPc(name, config) {
    const pc = new RTCPeerConnection(config);
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      this.#send({
        type: 'trickle',
        pc: name,
        candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null,
      });
    };
    pc.oniceconnectionstatechange = () => this.#onIceState(name, pc);
    return pc;
  }

  /** The publisher and subscriber PCs, for tests and advanced use. */
  get pcs() {
    return { publisher: this.#pub, subscriber: this.#sub };
  }

  get role() {
    return this.participant?.role;
  }

  get identity() {
    return this.participant?.identity;
  }

  // ---- publishing -------------------------------------------------------------------------

  /**
   * Publishes a local track. `opts.source`: camera|microphone|screen|screen_audio (default from
   * the kind); `opts.simulcast`: true for DEFAULT_SIMULCAST or an array of
   * `{rid, scaleResolutionDownBy, maxBitrate}`; `opts.name`, `opts.muted`.
   * Resolves with the server's TrackInfo once `track_published` arrived and the offer is answered.
   */
  async publish(track, opts = {}) {
    const kind = track.kind;
    const source = opts.source ?? (kind === 'audio' ? 'microphone' : 'camera');
    const layers = kind === 'video' && opts.simulcast
      ? (Array.isArray(opts.simulcast) ? opts.simulcast : DEFAULT_SIMULCAST)
      : null;
    const settings = track.getSettings?.() ?? {};
    const cid = track.id;
    const msg = {
      type: 'publish',
      cid,
      kind,
      source,
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.muted ? { muted: true } : {}),
      ...(this.#e2ee ? { e2ee: true } : {}),
    };
    if (layers) {
      msg.simulcast = layers.map((l) => ({
        rid: l.rid,
        ...(settings.width ? { width: Math.round(settings.width / (l.scaleResolutionDownBy ?? 1)) } : {}),
        ...(settings.height ? { height: Math.round(settings.height / (l.scaleResolutionDownBy ?? 1)) } : {}),
        ...(l.maxBitrate ? { max_bitrate: l.maxBitrate } : {}),
      }));
    }
    // `track_published {cid}` may come before or after the answer: wait for it from now on.
    const published = this.#waitFor((m) => m.type === 'track_published' && m.cid === cid);
    const req = this.#send(msg);
    const refused = this.#errorFor(req);
    const transceiver = this.#pub.addTransceiver(track, {
      direction: 'sendonly',
      streams: [new MediaStream([track])],
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
    if (this.#e2ee) this.#attachE2ee(transceiver.sender, 'encrypt');
    this.#preferCodec(transceiver, kind, opts.codec);
    try {
      await Promise.race([this.#negotiatePublisher(), refused.promise]);
      const reply = await Promise.race([published.promise, refused.promise, timeout('track_published')]);
      const info = reply.track;
      const pubn = { trackSid: info.sid, cid, track, sender: transceiver.sender, transceiver, info };
      this.publications.set(info.sid, pubn);
      return info;
    } catch (e) {
      published.cancel();
      this.#pub.removeTrack(transceiver.sender);
      throw e;
    } finally {
      refused.cancel();
    }
  }

  /** Stops publishing a track (by track sid or the MediaStreamTrack itself). */
  async unpublish(trackOrSid) {
    const pubn = this.#publication(trackOrSid);
    if (!pubn) throw new Error('not published');
    this.publications.delete(pubn.trackSid);
    this.#send({ type: 'unpublish', track_sid: pubn.trackSid });
    this.#pub.removeTrack(pubn.sender);
    await this.#negotiatePublisher();
  }

  /** Mutes/unmutes a local publication: the track stops sending and the room is told. */
  setMuted(trackOrSid, muted) {
    const pubn = this.#publication(trackOrSid);
    if (!pubn) throw new Error('not published');
    pubn.track.enabled = !muted;
    this.#send({ type: 'mute', track_sid: pubn.trackSid, muted: !!muted });
  }

  /** Asks the server for at most `spatial` (0..2) of a simulcast track, optionally `temporal`. */
  setLayer(trackSid, spatial, temporal) {
    this.#send({
      type: 'layer',
      track_sid: trackSid,
      max_spatial: spatial,
      ...(temporal === undefined ? {} : { max_temporal: temporal }),
    });
  }

  /** Subscribes to / unsubscribes from a remote track (auto-subscribe is the server default). */
  setSubscribed(trackSid, subscribe) {
    this.#send({ type: 'subscribe', track_sid: trackSid, subscribe: !!subscribe });
  }

  #publication(trackOrSid) {
    if (typeof trackOrSid === 'string') return this.publications.get(trackOrSid);
    for (const p of this.publications.values()) if (p.track === trackOrSid) return p;
    return undefined;
  }

  #preferCodec(transceiver, kind, codec) {
    if (!codec || !RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
    const caps = RTCRtpReceiver.getCapabilities(kind)?.codecs ?? [];
    const want = `${kind}/${codec}`.toLowerCase();
    const first = caps.filter((c) => c.mimeType.toLowerCase() === want);
    if (first.length) transceiver.setCodecPreferences([...first, ...caps.filter((c) => !first.includes(c))]);
  }

  /** One publisher offer/answer at a time; publishes and restarts queue behind each other. */
  #negotiatePublisher({ iceRestart = false } = {}) {
    const run = async () => {
      if (this.#closed) return;
      const offer = await this.#pub.createOffer(iceRestart ? { iceRestart: true } : {});
      await this.#pub.setLocalDescription(offer);
      const reply = await this.#call(
        { type: 'offer', pc: 'publisher', sdp: this.#pub.localDescription.sdp },
        (m) => m.type === 'answer' && m.pc === 'publisher',
      );
      await this.#pub.setRemoteDescription({ type: 'answer', sdp: this.#remoteSdp(reply.sdp) });
    };
    const p = this.#pubQueue.then(run, run);
    this.#pubQueue = p.catch(() => {});
    return p;
  }

  // ---- subscribing ------------------------------------------------------------------------

  #onSubscriberOffer(sdp) {
    const run = async () => {
      if (this.#closed) return;
      const remote = this.#remoteSdp(sdp);
      const before = new Set(this.subscriptions.keys());
      this.#sections = parseSections(remote);
      await this.#sub.setRemoteDescription({ type: 'offer', sdp: remote });
      const answer = await this.#sub.createAnswer();
      await this.#sub.setLocalDescription(answer);
      this.#send({ type: 'answer', pc: 'subscriber', sdp: this.#sub.localDescription.sdp });
      // Tracks whose section went away (port 0 / inactive) are unsubscribed.
      const live = new Set();
      for (const t of this.#sub.getTransceivers()) {
        if (t.mid !== null && !t.stopped && t.currentDirection !== 'inactive') live.add(t.mid);
      }
      for (const sid of before) {
        const s = this.subscriptions.get(sid);
        if (s && !live.has(s.mid)) this.#dropSubscription(sid);
      }
    };
    const p = this.#subQueue.then(run, run);
    this.#subQueue = p.catch((e) => this.emit('error', e));
  }

  #sections = [];

  #onTrack(ev) {
    const mid = ev.transceiver?.mid;
    const section = this.#sections.find((s) => s.mid === mid) ?? {};
    // The msid track id is the track sid; fall back to TrackInfo.mid, then the raw id.
    let trackSid = section.trackId;
    let participantSid = section.streamId;
    const known = this.#findTrack((t) => t.sid === trackSid) ?? this.#findTrack((t) => t.mid === mid);
    if (known) {
      trackSid = known.sid;
      participantSid = known.participant_sid ?? participantSid;
    }
    trackSid = trackSid ?? ev.track.id;
    if (this.#e2ee) this.#attachE2ee(ev.receiver, 'decrypt');
    const sub = { trackSid, track: ev.track, participantSid, mid, receiver: ev.receiver };
    this.subscriptions.set(trackSid, sub);
    const participant = this.participants.get(participantSid);
    this.emit('track_subscribed', { ...sub, participant, info: known });
  }

  #dropSubscription(trackSid) {
    const sub = this.subscriptions.get(trackSid);
    if (!sub) return;
    this.subscriptions.delete(trackSid);
    this.emit('track_unsubscribed', sub);
  }

  #findTrack(pred) {
    for (const p of this.participants.values()) {
      for (const t of p.tracks.values()) if (pred(t)) return t;
    }
    return undefined;
  }

  #addParticipant(info) {
    const p = { ...info, tracks: new Map() };
    for (const t of info.tracks ?? []) p.tracks.set(t.sid, { ...t, participant_sid: t.participant_sid ?? info.sid });
    this.participants.set(info.sid, p);
    return p;
  }

  // ---- roles and control ------------------------------------------------------------------

  /** Controller: ask the host for control. */
  requestControl() {
    this.#send({ type: 'request_control' });
  }

  /** Host: grant control to `identity`. */
  grantControl(identity) {
    this.#send({ type: 'grant_control', identity });
  }

  /** Host: revoke control from `identity`. */
  revokeControl(identity) {
    this.#send({ type: 'revoke_control', identity });
  }

  /** Host: hand the host role to `identity`. */
  transferHost(identity) {
    this.#send({ type: 'transfer_host', identity });
  }

  /** Granted controller: send an input event (any JSON) to the host. */
  sendInput(event) {
    this.#send({ type: 'input', event });
  }

  /** Updates the participant's metadata (needs can_update_metadata). */
  updateMetadata(metadata) {
    this.#send({ type: 'update_metadata', metadata });
  }

  // ---- liveness, restart, stats ------------------------------------------------------------

  /** Sends `ping`, resolves with the round trip in ms. */
  async ping() {
    const t = Date.now();
    await this.#call({ type: 'ping', t }, (m) => m.type === 'pong' && m.t === t);
    this.rtt = Date.now() - t;
    return this.rtt;
  }

  /**
   * ICE restart after a network change: `resume` makes the server send a fresh subscriber offer
   * with new ICE credentials; the publisher restarts from our side with an iceRestart offer.
   */
  async resume() {
    if (this.#closed) return;
    this.#lastRestart = Date.now();
    this.iceRestarts++;
    this.emit('ice_restart', { count: this.iceRestarts });
    this.#send({ type: 'resume' });
    if (this.publications.size > 0) await this.#negotiatePublisher({ iceRestart: true });
  }

  #onIceState(name, pc) {
    const state = pc.iceConnectionState;
    if (state === 'connected' || state === 'completed') {
      clearTimeout(this.#restartTimer);
      this.#restartTimer = null;
      return;
    }
    if ((state === 'disconnected' || state === 'failed') && !this.#restartTimer && this.#opts.autoRestart !== false) {
      this.#scheduleRestart();
    }
  }

  #scheduleRestart() {
    const wait = Math.max(RESTART_AFTER_MS, this.#lastRestart + RESTART_RETRY_MS - Date.now());
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      const bad = (pc) => pc && ['disconnected', 'failed'].includes(pc.iceConnectionState);
      if (this.#closed || !(bad(this.#pub) || bad(this.#sub))) return;
      this.resume().catch((e) => this.emit('error', e));
      this.#scheduleRestart();
    }, wait);
  }

  /** Restarts ICE when a connected PC's selected pair stopped receiving (see STALL_AFTER_MS). */
  async #checkStall() {
    const now = Date.now();
    let stalled = false;
    for (const [name, pc] of [['publisher', this.#pub], ['subscriber', this.#sub]]) {
      const p = this.#progress[name];
      if (!pc || !['connected', 'completed'].includes(pc.iceConnectionState)) {
        p.key = null;
        p.moved = false;
        continue;
      }
      const key = await receivedOnPath(pc);
      if (key === null) continue;
      if (key !== p.key) {
        p.moved = p.key !== null;
        p.key = key;
        p.since = now;
      } else if (p.moved && now - p.since >= STALL_AFTER_MS) {
        stalled = true;
      }
    }
    if (stalled && !this.#closed && now - this.#lastRestart >= RESTART_RETRY_MS) await this.resume();
  }

  /** getStats of both PCs as plain arrays of report objects, plus E2EE counters if any. */
  async stats() {
    const flat = async (pc) => {
      const out = [];
      if (pc) (await pc.getStats()).forEach((r) => out.push({ ...r }));
      return out;
    };
    return {
      publisher: await flat(this.#pub),
      subscriber: await flat(this.#sub),
      e2ee: this.#e2ee ? { ...this.#e2ee.counters } : null,
      iceRestarts: this.iceRestarts,
    };
  }

  // ---- E2EE --------------------------------------------------------------------------------

  async #setupE2ee(passphrase) {
    const counters = { encrypted: 0, decrypted: 0, decryptFailed: 0 };
    if (typeof RTCRtpScriptTransform !== 'undefined') {
      const worker = new Worker(new URL('./sluice-e2ee-worker.js', import.meta.url), { type: 'module' });
      worker.postMessage({ passphrase });
      worker.onmessage = (ev) => {
        if (ev.data?.counters) Object.assign(counters, ev.data.counters);
      };
      this.#e2ee = { worker, counters };
    } else {
      const mod = await import('./sluice-e2ee.js');
      this.#e2ee = { worker: null, counters, key: await mod.deriveKey(passphrase), mod };
    }
  }

  #attachE2ee(senderOrReceiver, direction) {
    const e = this.#e2ee;
    if (e.worker) {
      senderOrReceiver.transform = new RTCRtpScriptTransform(e.worker, { direction });
      return;
    }
    const { readable, writable } = senderOrReceiver.createEncodedStreams();
    readable.pipeThrough(e.mod.frameTransform(e.key, direction, e.counters)).pipeTo(writable).catch(() => {});
  }

  // ---- signaling plumbing ------------------------------------------------------------------

  #remoteSdp(sdp) {
    return this.#opts.relay ? rewriteCandidates(sdp, this.#opts.relay) : sdp;
  }

  /** Sends a message with a fresh `req`; returns the req. */
  #send(msg) {
    const req = this.#nextReq++;
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify({ ...msg, req }));
    return req;
  }

  /** Sends and waits for the reply matching `match` (or an error echoing our req). */
  async #call(msg, match) {
    const reply = this.#waitFor(match);
    const req = this.#send(msg);
    const refused = this.#errorFor(req);
    try {
      return await Promise.race([reply.promise, refused.promise, timeout(msg.type)]);
    } finally {
      reply.cancel();
      refused.cancel();
    }
  }

  #waitFor(match) {
    let entry;
    const promise = new Promise((resolve) => {
      entry = { match, resolve };
      this.#waiters.push(entry);
    });
    return { promise, cancel: () => (this.#waiters = this.#waiters.filter((w) => w !== entry)) };
  }

  #errorFor(req) {
    let entry;
    const promise = new Promise((_, reject) => {
      entry = { reject };
      this.#pending.set(req, entry);
    });
    promise.catch(() => {});
    return { promise, cancel: () => this.#pending.delete(req) };
  }

  _onMessage(msg) {
    for (const w of [...this.#waiters]) {
      if (w.match(msg)) {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        w.resolve(msg);
      }
    }
    switch (msg.type) {
      case 'error': {
        const err = new SluiceError(msg);
        err.req = msg.req;
        const pending = this.#pending.get(msg.req);
        if (pending) pending.reject(err);
        this.emit('error', err);
        break;
      }
      case 'offer':
        if (msg.pc === 'subscriber') this.#onSubscriberOffer(msg.sdp);
        break;
      case 'participant_joined': {
        const p = this.#addParticipant(msg.participant);
        this.emit('participant_joined', { participant: p });
        break;
      }
      case 'participant_left': {
        const p = this.participants.get(msg.sid);
        this.participants.delete(msg.sid);
        for (const [sid, s] of this.subscriptions) if (s.participantSid === msg.sid) this.#dropSubscription(sid);
        this.emit('participant_left', { sid: msg.sid, identity: msg.identity, participant: p });
        break;
      }
      case 'track_published':
        if (msg.cid === undefined && msg.track) {
          const psid = msg.participant_sid ?? msg.track.participant_sid;
          const p = this.participants.get(psid);
          const info = { ...msg.track, participant_sid: psid };
          if (p) p.tracks.set(info.sid, info);
          this.emit('track_published', { participant: p, track: info });
        }
        break;
      case 'track_unpublished':
        for (const p of this.participants.values()) p.tracks.delete(msg.track_sid);
        this.#dropSubscription(msg.track_sid);
        this.emit('track_unpublished', { trackSid: msg.track_sid });
        break;
      case 'track_muted': {
        const t = this.#findTrack((x) => x.sid === msg.track_sid);
        if (t) t.muted = msg.muted;
        this.emit('track_muted', { trackSid: msg.track_sid, muted: msg.muted });
        break;
      }
      case 'role_changed':
        if (msg.identity === this.participant?.identity) this.participant.role = msg.role;
        for (const p of this.participants.values()) if (p.identity === msg.identity) p.role = msg.role;
        this.emit('role_changed', { identity: msg.identity, role: msg.role, self: msg.identity === this.identity });
        break;
      case 'control_requested':
      case 'control_granted':
      case 'control_revoked':
      case 'host_transferred':
        this.emit(msg.type, { identity: msg.identity, self: msg.identity === this.identity });
        break;
      case 'input':
        this.emit('input', { from: msg.from, event: msg.event });
        break;
      case 'active_speakers':
        this.emit('active_speakers', { speakers: msg.speakers });
        break;
      case 'connection_quality':
        this.emit('connection_quality', { updates: msg.updates });
        break;
      case 'leave':
        this._close(msg.reason ?? 'server');
        break;
      default:
        break;
    }
  }

  /** Leaves the room and closes both PCs and the socket. */
  leave() {
    if (this.#closed) return;
    this.#send({ type: 'leave' });
    this._close('client');
  }

  _close(reason) {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pingTimer);
    clearTimeout(this.#restartTimer);
    clearInterval(this.#stallTimer);
    this.#pub?.close();
    this.#sub?.close();
    this.#e2ee?.worker?.terminate();
    try {
      this.#ws.close();
    } catch {
      // already closed
    }
    for (const p of this.#pending.values()) p.reject(new Error(`disconnected: ${reason}`));
    this.#pending.clear();
    this.emit('disconnected', { reason });
  }
}

function timeout(what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), REPLY_TIMEOUT_MS));
}

/**
 * Opens the signaling socket, joins, and resolves with a Room once `joined` arrived.
 * `opts`: `name`, `autoSubscribe` (default true; false sends nothing extra — subscribe per track
 * with `room.setSubscribed`), `e2eeKey` (shared passphrase: encrypt what we publish, decrypt what
 * we receive), `relay` ("ip:port": send media via that address; tests), `iceTransportPolicy`,
 * `autoRestart` (default true: ICE restart after the path stays down ~2 s).
 */
export async function connect(url, token, opts = {}) {
  const ws = new WebSocket(signalUrl(url, token));
  const room = new Room(ws, { autoSubscribe: true, ...opts });
  const early = [];
  let joined = null;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout joining')), REPLY_TIMEOUT_MS);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'join', req: 0, ...(opts.name ? { name: opts.name } : {}) }));
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error('signaling socket error'));
    };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      reject(new Error(`signaling socket closed (${ev.code} ${ev.reason})`));
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'joined') {
        clearTimeout(timer);
        joined = msg;
        resolve();
      } else if (msg.type === 'error' && !joined) {
        clearTimeout(timer);
        reject(new SluiceError(msg));
      } else {
        early.push(msg);
      }
    };
  });
  // Until both PCs exist, messages (a subscriber offer right after `joined`, say) wait in `early`.
  await room._start(joined);
  if (opts.autoSubscribe === false) {
    for (const p of room.participants.values()) {
      for (const t of p.tracks.values()) room.setSubscribed(t.sid, false);
    }
  }
  for (const msg of early) room._onMessage(msg);
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    room._onMessage(msg);
  };
  ws.onclose = () => room._close('socket closed');
  ws.onerror = () => {};
  return room;
}

/** Asks a dev-mode server for a token (`GET /dev/token`); accepts JSON `{token}` or plain text. */
export async function devToken(base, room, identity, role = 'host') {
  const u = new URL('/dev/token', base);
  u.searchParams.set('room', room);
  u.searchParams.set('identity', identity);
  u.searchParams.set('role', role);
  const res = await fetch(u);
  const text = (await res.text()).trim();
  if (!res.ok) {
    let why = '';
    try {
      why = `: ${JSON.parse(text).error.message}`;
    } catch {
      // not the JSON error body; the status says enough
    }
    throw new Error(`dev token: HTTP ${res.status}${why}`);
  }
  try {
    return JSON.parse(text).token ?? text;
  } catch {
    return text;
  }
}

export const Sluice = { connect, devToken, signalUrl, parseSections, rewriteCandidates, Room, SluiceError, DEFAULT_SIMULCAST };
export default Sluice;
