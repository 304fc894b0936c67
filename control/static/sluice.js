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
// host_transferred, input, input_route, active_speakers, connection_quality, ice_restart, error, disconnected.
//
// Hybrid P2P/SFU (issue 8, docs/protocol.md "Hybrid"): `join` says `capabilities: ["p2p"]`
// (opt out with `{p2p: false}`); the server decides the room's mode. In P2P mode media goes over
// a full mesh (sluice-mesh.js) instead of the two SFU PCs; on `mode_change` the client migrates
// (hard cut or gradual) and acknowledges with mode_ack / mode_ready / mode_failed. Every remote
// participant's audio plays through one WebAudio graph (sluice-audio.js) so a path switch is a
// gain change: the library plays remote audio itself (`{playAudio: false}`: it doesn't; take
// `room.audioOutput(identity)`), apps should not play audio tracks again. Extra events: mode
// {mode, id}, migrating {id, from, to, strategy, reason}, mode_setting {setting}, prewarm,
// notice {code, message}, remote_audio {identity, path}, p2p_state {identity, state};
// track_subscribed / track_unsubscribed carry `path: 'sfu'|'p2p'`.
//
// Data channels (issue 17, sluice-data.js): with `{data: true}` the publisher PC carries
// `_reliable` and `_lossy`, relayed by the SFU: `room.send(data, {reliable, destinations})`
// (string or bytes; destinations: identities, none = the whole room) and the `data` event
// `{from, participant, data, reliable}` (`from`: the sender's identity, stamped by the server).
// `data_open` fires when both channels are open (`await room.dataReady()`); `data_behind`
// {reliable, dropped} when the SFU starts dropping relayed data for us (we read too slowly). Data needs the SFU
// path: in P2P mode the channels open once the room moves to SFU.

import { AudioOutput } from './sluice-audio.js';
import { Mesh } from './sluice-mesh.js';
import { DataLink, controlHolder, sendInput } from './sluice-data.js';

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
// Migration: how long the new path may take to carry every remote participant's audio before we
// report mode_failed; how often we check; how long we keep measuring after the switch.
const MIGRATE_WAIT_MS = 8000;
const MIGRATE_POLL_MS = 50;
const GAP_TAIL_MS = 300;
// A queued join (a migration is running) may wait this long for `joined`.
const QUEUED_JOIN_MS = 45000;

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
  /** track sid → 'paused' | 'active', as the SFU's `stream_state` said last. */
  streamStates = new Map();
  /** Local publications by track sid: `{trackSid, cid, track, sender, info}`. */
  publications = new Map();
  /** `{position, estimated_wait_ms}` if our join was queued behind a migration. */
  queued = null;
  /** Number of ICE restarts this client asked for. */
  iceRestarts = 0;
  /** Round-trip of the last ping, ms. */
  rtt = null;
  /** The path media takes now: 'sfu' | 'p2p' (`joined.mode`, then each `mode_changed`). */
  mode = 'sfu';
  /** The room's mode setting: 'sfu' | 'p2p' | 'auto' (null from a server without hybrid). */
  modeSetting = null;
  /** The migration in progress `{id, from, to, strategy, reason, grace_ms}`, or null. */
  migration = null;
  /** The last migration this client switched for: `{id, from, to, strategy, audio_gap_ms, duration_ms, gaps}`. */
  lastMigration = null;
  /** P2P remote tracks by `${participantSid}/${track.id}`: `{trackSid, track, participantSid, receiver, path}`. */
  p2pSubscriptions = new Map();

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
  #pcConfig = null;
  #mesh = null;
  #audio = null;
  #seenModeChanges = new Set();
  // Whether the SFU PCs carry media (SFU mode, or being built during a migration to SFU).
  #sfuLive = true;
  // The data channels on the current publisher PC (opts.data), created with its first offer.
  #data = null;
  #control = controlHolder(this);

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
    this.#pcConfig = config;
    this.mode = joined.mode?.mode === 'p2p' ? 'p2p' : 'sfu';
    this.modeSetting = joined.mode?.setting ?? null;
    this.#sfuLive = this.mode === 'sfu';
    if (this.#opts.audioGraph !== false && typeof AudioContext !== 'undefined') {
      this.#audio = new AudioOutput({
        path: this.mode,
        play: this.#opts.playAudio !== false,
        onAudio: (identity, path) => this.emit('remote_audio', { identity, path }),
        meter: this.#opts.audioMeter,
      });
      await this.#audio.ready();
    }
    if (this.#opts.p2p !== false) {
      this.#mesh = new Mesh({
        // The SFU PCs' ICE servers (TURN credentials from `joined.ice_servers`), no E2EE flag.
        config: { ...config, encodedInsertableStreams: undefined },
        send: (m) => this.#send(m),
        onTrack: (peer, ev) => this.#onMeshTrack(peer, ev),
        onState: (peer) => this.emit('p2p_state', { identity: peer.identity, sid: peer.sid, state: peer.pc.connectionState }),
        localTracks: () => [...this.publications.values()].map((p) => ({ track: p.track, stream: p.stream })),
      });
    }
    this.#openSfuPcs();
    // Not awaited: the answer arrives on the socket, whose messages are held until we return.
    if (this.#opts.data && this.#sfuLive) this.#sfuPublish().catch((e) => this.emit('error', e));
    // P2P: a new member offers to everyone already here (they wait for our offer) — unless the
    // room is already moving to SFU (our join started it): the mode_change follows, and a
    // fallback to P2P rebuilds the mesh on both sides (greater sid offers).
    if (this.mode === 'p2p' && this.#mesh && joined.mode?.migrating?.to !== 'sfu') {
      for (const p of this.participants.values()) this.#mesh.connect(p.sid, p.identity);
    }
    this.#pingTimer = setInterval(() => this.ping().catch(() => {}), PING_INTERVAL_MS);
    if (this.#opts.autoRestart !== false) {
      this.#stallTimer = setInterval(() => this.#checkStall().catch(() => {}), STALL_CHECK_MS);
    }
    this.emit('joined', { room: this.room, participant: this.participant });
  }

  #openSfuPcs() {
    this.#data = null;
    this.#pub = this.#newPc('publisher', this.#pcConfig);
    this.#sub = this.#newPc('subscriber', this.#pcConfig);
    this.#sub.ontrack = (ev) => this.#onTrack(ev);
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

  /** The P2P PCs by remote participant sid (empty in SFU mode). */
  get p2pPcs() {
    return new Map([...(this.#mesh?.peers ?? new Map())].map(([sid, p]) => [sid, p.pc]));
  }

  /** The AudioNode carrying what the user hears from `identity` (null: no audio from them yet / no graph). */
  audioOutput(identity) {
    return this.#audio?.output(identity) ?? null;
  }

  /** Whether the library plays remote audio itself (then apps must not play audio tracks too). */
  get playsAudio() {
    return !!this.#audio && this.#opts.playAudio !== false;
  }

  /** The AudioContext of the remote-audio graph (null without one). */
  get audioContext() {
    return this.#audio?.ctx ?? null;
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
    const stream = new MediaStream([track]);
    // In P2P mode the SFU publisher stays idle: the track goes to the mesh once the server said yes.
    const transceiver = this.#sfuLive ? this.#addPubTransceiver(track, stream, layers, opts.codec) : null;
    try {
      if (transceiver) await Promise.race([this.#negotiatePublisher(), refused.promise]);
      const reply = await Promise.race([published.promise, refused.promise, timeout('track_published')]);
      const info = reply.track;
      const pubn = { trackSid: info.sid, cid, track, stream, layers, codec: opts.codec, opts, sender: transceiver?.sender ?? null, transceiver, info };
      this.publications.set(info.sid, pubn);
      if (this.#mesh?.peers.size) this.#mesh.addTrack(track, stream);
      // A migration to SFU began while we waited: the track joins the SFU publisher too.
      if (this.#sfuLive && !transceiver) await this.#sfuPublish();
      return info;
    } catch (e) {
      published.cancel();
      if (transceiver) this.#pub.removeTrack(transceiver.sender);
      throw e;
    } finally {
      refused.cancel();
    }
  }

  #addPubTransceiver(track, stream, layers, codec) {
    const transceiver = this.#pub.addTransceiver(track, {
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
    if (this.#e2ee) this.#attachE2ee(transceiver.sender, 'encrypt');
    this.#preferCodec(transceiver, track.kind, codec);
    return transceiver;
  }

  /** Stops publishing a track (by track sid or the MediaStreamTrack itself). */
  async unpublish(trackOrSid) {
    const pubn = this.#publication(trackOrSid);
    if (!pubn) throw new Error('not published');
    this.publications.delete(pubn.trackSid);
    this.#send({ type: 'unpublish', track_sid: pubn.trackSid });
    this.#mesh?.removeTrack(pubn.track);
    if (!pubn.sender) return;
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

  // ---- data channels ----------------------------------------------------------------------

  /**
   * Sends `data` (a string, ArrayBuffer or typed array; at most 64 KiB with the envelope) to the
   * room, or to the identities in `destinations` (alias `to`). `reliable: false` uses `_lossy`:
   * unordered, never retransmitted, dropped by the server for a receiver that is behind.
   * Throws when the channels are not open (join with `{data: true}`, SFU mode).
   */
  send(data, { reliable = true, destinations, to } = {}) {
    if (!this.#data?.open) throw new Error('data channels are not open (connect with {data: true}; they need the SFU path)');
    this.#data.send(data, { reliable, to: destinations ?? to ?? [] });
  }

  /** Resolves once both data channels are open (rejects after `ms`). */
  dataReady(ms = REPLY_TIMEOUT_MS) {
    if (this.#data?.open) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`data channels not open within ${ms} ms`));
      }, ms);
      const off = this.on('data_open', () => {
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  /** The `_reliable`/`_lossy` RTCDataChannels (null before `data_open`), for flow control. */
  get dataChannels() {
    return this.#data?.channels ?? null;
  }

  #byIdentity(identity) {
    for (const p of this.participants.values()) if (p.identity === identity) return p;
    return null;
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
    const sub = { trackSid, track: ev.track, participantSid, mid, receiver: ev.receiver, path: 'sfu' };
    this.subscriptions.set(trackSid, sub);
    const participant = this.participants.get(participantSid);
    if (ev.track.kind === 'audio' && participant) this.#audio?.addTrack(participant.identity, 'sfu', ev.track);
    this.emit('track_subscribed', { ...sub, participant, info: known });
  }

  #dropSubscription(trackSid) {
    const sub = this.subscriptions.get(trackSid);
    if (!sub) return;
    this.subscriptions.delete(trackSid);
    const identity = this.participants.get(sub.participantSid)?.identity;
    if (identity) this.#audio?.removeTrack(identity, 'sfu', sub.track.id);
    this.emit('track_unsubscribed', sub);
  }

  /** A remote track on a P2P PC: tied to the sender's TrackInfo of that kind not yet matched. */
  #onMeshTrack(peer, ev) {
    const track = ev.track;
    const participant = this.participants.get(peer.sid);
    const taken = new Set([...this.p2pSubscriptions.values()].filter((s) => s.participantSid === peer.sid).map((s) => s.trackSid));
    const info = [...(participant?.tracks.values() ?? [])].find((t) => t.kind === track.kind && !taken.has(t.sid));
    const sub = { trackSid: info?.sid ?? `p2p-${peer.sid}-${track.id}`, track, participantSid: peer.sid, receiver: ev.receiver, path: 'p2p' };
    const key = `${peer.sid}/${track.id}`;
    if (this.p2pSubscriptions.has(key)) return;
    this.p2pSubscriptions.set(key, sub);
    if (track.kind === 'audio') this.#audio?.addTrack(peer.identity, 'p2p', track);
    this.emit('track_subscribed', { ...sub, participant, info });
  }

  /** Forgets the P2P tracks of a closed mesh peer. */
  #dropMeshPeer(peer) {
    if (!peer) return;
    for (const [key, sub] of [...this.p2pSubscriptions]) {
      if (sub.participantSid !== peer.sid) continue;
      this.p2pSubscriptions.delete(key);
      this.emit('track_unsubscribed', sub);
    }
    this.#audio?.removeTrack(peer.identity, 'p2p');
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

  // ---- hybrid: migration between P2P and SFU ------------------------------------------------

  #onModeChange(msg) {
    // Acknowledge every copy (the server resends until it hears one); act on an id only once.
    this.#send({ type: 'mode_ack', id: msg.id });
    if (this.#seenModeChanges.has(msg.id)) return;
    this.#seenModeChanges.add(msg.id);
    if (this.migration) this.migration.cancelled = true;
    const m = {
      id: msg.id,
      from: msg.from,
      to: msg.to === 'p2p' ? 'p2p' : 'sfu',
      strategy: msg.strategy === 'hard_cut' ? 'hard_cut' : 'gradual',
      reason: msg.reason,
      grace_ms: msg.grace_ms ?? 5000,
      started: performance.now(),
      cancelled: false,
    };
    this.migration = m;
    this.emit('migrating', { id: m.id, from: m.from, to: m.to, strategy: m.strategy, reason: m.reason });
    this.#migrate(m).catch((e) => {
      if (m.cancelled || this.#closed) return;
      this.#send({ type: 'mode_failed', id: m.id, reason: String(e.message ?? e) });
      this.emit('error', new Error(`migration ${m.id} to ${m.to} failed: ${e.message ?? e}`));
    });
  }

  async #migrate(m) {
    const audio = this.#audio;
    // The gap is measured for participants the user hears right now (a newcomer we never heard
    // has no gap, only a start).
    const heard = audio?.running ? audio.audibleNow() : [];
    audio?.startGap();
    if (m.strategy === 'hard_cut') {
      // Old path down first, then the new one: everything new plays as soon as it arrives.
      if (m.to === 'sfu') this.#closeMesh();
      else this.#closeSfu();
      audio?.switchTo(m.to);
    }
    if (m.to === 'sfu') {
      this.#sfuLive = true;
      await this.#sfuPublish();
      await this.#until(m, () => this.#sfuMissing(), 'SFU audio');
    } else {
      this.#buildMesh();
      await this.#until(m, () => this.#meshMissing(), 'P2P audio');
    }
    if (m.cancelled) return;
    audio?.switchTo(m.to);
    m.switched = performance.now();
    if (heard.length) await new Promise((r) => setTimeout(r, GAP_TAIL_MS));
    if (m.cancelled) return;
    const gaps = heard.length ? audio.gaps(heard) : {};
    const values = Object.values(gaps).filter((v) => v !== null);
    const gap = values.length ? Math.max(...values) : null;
    this.lastMigration = {
      id: m.id,
      from: m.from,
      to: m.to,
      strategy: m.strategy,
      audio_gap_ms: gap,
      switch_ms: Math.round(m.switched - m.started),
      duration_ms: null,
      gaps,
    };
    m.readySent = true;
    this.#send({ type: 'mode_ready', id: m.id, ...(gap === null ? {} : { audio_gap_ms: gap }) });
  }

  /**
   * Polls `missing()` (what the new path still lacks, '' when nothing; throws when the path
   * failed) until it is ''; bounded by MIGRATE_WAIT_MS.
   */
  async #until(m, missing, what) {
    const end = performance.now() + MIGRATE_WAIT_MS;
    while (!m.cancelled && !this.#closed) {
      const lack = missing();
      if (!lack) return;
      if (performance.now() > end) throw new Error(`timeout: ${what} not ready within ${MIGRATE_WAIT_MS} ms (${lack})`);
      await new Promise((r) => setTimeout(r, MIGRATE_POLL_MS));
    }
  }

  /** Sends every local publication over the SFU publisher (one offer for all). */
  async #sfuPublish() {
    let added = false;
    if (this.#opts.data && !this.#data) {
      this.#data = new DataLink(this.#pub, {
        onMessage: (m) => this.emit('data', { ...m, participant: this.#byIdentity(m.from) }),
        onInput: (m) => this.emit('input', { ...m, via: 'data_channel' }),
        onState: () => {
          if (this.#data?.open) this.emit('data_open', {});
        },
      });
      added = true;
    }
    for (const pubn of this.publications.values()) {
      if (pubn.transceiver) continue;
      pubn.transceiver = this.#addPubTransceiver(pubn.track, pubn.stream, pubn.layers, pubn.codec);
      pubn.sender = pubn.transceiver.sender;
      added = true;
    }
    if (added) await this.#negotiatePublisher();
  }

  /** Remote participants that publish unmuted audio. */
  #audioPublishers() {
    return [...this.participants.values()].filter((p) => [...p.tracks.values()].some((t) => t.kind === 'audio' && !t.muted));
  }

  /** What the SFU path still lacks ('' when every remote audio plays over it). */
  #sfuMissing() {
    for (const [name, pc] of [['publisher', this.#pub], ['subscriber', this.#sub]]) {
      if (pc.connectionState === 'failed') throw new Error(`sfu_pc_failed: ${name}`);
    }
    if (this.publications.size > 0 && this.#pub.connectionState !== 'connected') return `publisher ${this.#pub.connectionState}`;
    // With a running graph "arrived" means the audio plays; without one (or suspended by the
    // autoplay policy) that the track is there.
    const metered = this.#audio?.running;
    const silent = this.#audioPublishers().filter((p) => {
      if (metered) return !this.#audio.pathPlays(p.identity, 'sfu');
      return ![...this.subscriptions.values()].some((s) => s.participantSid === p.sid && s.track.kind === 'audio');
    });
    return silent.length ? `no SFU audio from ${silent.map((p) => p.identity).join(', ')}` : '';
  }

  /** What the mesh still lacks ('' when connected to everyone and every remote audio plays). */
  #meshMissing() {
    if (!this.#mesh) throw new Error('p2p_unsupported');
    for (const p of this.participants.values()) {
      const peer = this.#mesh.peers.get(p.sid);
      if (!peer) return `no P2P PC to ${p.identity}`;
      if (peer.pc.connectionState === 'failed') throw new Error(`p2p_failed: ${p.identity}`);
      if (peer.pc.connectionState !== 'connected') return `P2P to ${p.identity} ${peer.pc.connectionState}`;
    }
    const metered = this.#audio?.running;
    const silent = this.#audioPublishers().filter((p) => {
      if (metered) return !this.#audio.pathPlays(p.identity, 'p2p');
      return ![...this.p2pSubscriptions.values()].some((s) => s.participantSid === p.sid && s.track.kind === 'audio');
    });
    return silent.length ? `no P2P audio from ${silent.map((p) => p.identity).join(', ')}` : '';
  }

  /** P2P after SFU: the greater sid offers; the other side waits for that offer. */
  #buildMesh() {
    if (!this.#mesh) throw new Error('p2p_unsupported');
    for (const p of this.participants.values()) {
      if (this.#mesh.peers.has(p.sid)) continue;
      if (this.participant.sid > p.sid) this.#mesh.connect(p.sid, p.identity);
    }
  }

  #closeMesh() {
    for (const peer of this.#mesh?.closeAll() ?? []) this.#dropMeshPeer(peer);
  }

  /**
   * Closes both SFU PCs (the server ends their dataplane sessions once the room is P2P) and opens
   * fresh ones for a later return to SFU. Publications stay published; only their SFU senders go.
   */
  #closeSfu() {
    this.#sfuLive = false;
    for (const sid of [...this.subscriptions.keys()]) this.#dropSubscription(sid);
    this.#pub?.close();
    this.#sub?.close();
    for (const pubn of this.publications.values()) {
      pubn.sender = null;
      pubn.transceiver = null;
    }
    this.#sections = [];
    this.#openSfuPcs();
  }

  #onModeChanged(msg) {
    // The end of an older migration while a newer one runs: the newer one decides.
    if (this.migration && this.migration.id !== msg.id) return;
    const m = this.migration;
    const mode = msg.mode === 'p2p' ? 'p2p' : 'sfu';
    this.mode = mode;
    if (m) {
      this.migration = null;
      if (this.lastMigration?.id === msg.id) this.lastMigration.duration_ms = Math.round(performance.now() - m.started);
      if (!m.readySent) {
        // The server finished without our mode_ready (a fallback, say): take its word for it.
        m.cancelled = true;
        this.#audio?.switchTo(mode);
        if (mode === 'p2p' && this.#mesh) this.#buildMesh();
        if (mode === 'sfu') {
          this.#sfuLive = true;
          this.#sfuPublish().catch((e) => this.emit('error', e));
        }
      }
    }
    // The old path goes after the grace period (gradual), unless the room moved on meanwhile.
    const closeOld = () => {
      if (this.#closed || this.mode !== mode || this.migration) return;
      if (mode === 'sfu') this.#closeMesh();
      else if (this.#sfuLive) this.#closeSfu();
    };
    if (m?.strategy === 'gradual') setTimeout(closeOld, m.grace_ms);
    else closeOld();
    this.emit('mode', { mode, id: msg.id, migration: this.lastMigration?.id === msg.id ? this.lastMigration : null });
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

  /** Granted controller: input (any JSON) to the host, on `_input` when open and routed (`input_route`), else the WebSocket (`via` forces one: sluice-data.js); returns the path. */
  sendInput(event, { via } = {}) {
    return sendInput(this.#data, this.#control, event, via, (e) => this.#send({ type: 'input', event: e }));
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

  /** getStats of both SFU PCs (and of each P2P PC, by identity) as plain arrays of report objects, plus E2EE counters if any. */
  async stats() {
    const flat = async (pc) => {
      const out = [];
      if (pc) (await pc.getStats()).forEach((r) => out.push({ ...r }));
      return out;
    };
    const p2p = {};
    for (const [sid, peer] of this.#mesh?.peers ?? []) p2p[peer.identity ?? sid] = await flat(peer.pc);
    return {
      publisher: await flat(this.#pub),
      subscriber: await flat(this.#sub),
      p2p,
      mode: this.mode,
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
        for (const [sid, s] of this.subscriptions) if (s.participantSid === msg.sid) this.#dropSubscription(sid);
        this.#dropMeshPeer(this.#mesh?.close(msg.sid));
        if (p) this.#audio?.removeParticipant(p.identity);
        this.participants.delete(msg.sid);
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
        this.emit('input', { from: msg.from, event: msg.event, via: 'websocket' });
        break;
      case 'input_route':
        this.emit('input_route', { dataChannel: !!msg.data_channel });
        break;
      case 'data_behind':
        // The SFU drops relayed data for us: we read too slowly (docs/protocol.md "Data channels").
        this.emit('data_behind', { reliable: !!msg.reliable, dropped: msg.dropped });
        break;
      case 'stream_state':
        // The SFU paused (or resumed) this subscription for bandwidth (docs/congestion.md;
        // only with dataplane.congestion_pause): the video stops until a probe finds room.
        this.streamStates.set(msg.track_sid, msg.state);
        this.emit('stream_state', { trackSid: msg.track_sid, state: msg.state, reason: msg.reason });
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
      case 'ice_servers': {
        // Fresh TURN credentials (they last `turn.ttl_s`; the server sends new ones at half of
        // that): for PCs made from now on and for the open ones' next gathering (ICE restart).
        const iceServers = (msg.ice_servers ?? []).map((s) => ({ ...s }));
        if (this.#pcConfig) this.#pcConfig = { ...this.#pcConfig, iceServers };
        this.#mesh?.setIceServers(iceServers);
        for (const pc of [this.#pub, this.#sub]) {
          try {
            pc?.setConfiguration({ ...pc.getConfiguration(), iceServers });
          } catch {
            // A closed PC refuses it; a new one is made from #pcConfig.
          }
        }
        break;
      }
      case 'reconnect':
        // The media server restarted and lost our sessions (DTLS included): fresh SFU PCs,
        // publications sent again (the server kept their track sids pending); its new
        // subscriber offer follows on this socket.
        if (this.mode === 'p2p' && !this.#sfuLive) break;
        this.#closeSfu();
        this.#sfuLive = true;
        this.#sfuPublish().catch((e) => this.emit('error', e));
        this.emit('reconnect', { reason: msg.reason });
        break;
      case 'p2p_signal':
        // The server relays only while the room is P2P or migrating; an offer that comes while
        // we move to SFU (a newcomer's) is still answered, so a fallback to P2P finds it up.
        this.#mesh?.onSignal(msg);
        break;
      case 'mode_change':
        this.#onModeChange(msg);
        break;
      case 'mode_changed':
        this.#onModeChanged(msg);
        break;
      case 'mode_setting':
        this.modeSetting = msg.setting;
        this.emit('mode_setting', { setting: msg.setting });
        break;
      case 'mode_prewarm':
        // Pre-warm: the server checked the SFU side. An SFU offer now would itself force the
        // room to SFU (protocol), so the client only tells the app.
        this.emit('prewarm', {});
        break;
      case 'notice':
        this.emit('notice', { code: msg.code, message: msg.message });
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
    this.#mesh?.closeAll();
    this.#audio?.close();
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
 * `autoRestart` (default true: ICE restart after the path stays down ~2 s), `p2p` (default true:
 * offer the P2P capability), `playAudio` (default true: play remote audio through the graph),
 * `audioGraph` (default true), `audioMeter` ('worklet' default, 'script': the ScriptProcessor
 * fallback), `onQueued({position, estimated_wait_ms})` (the join waits for a migration to end;
 * the room also emits `queued` then, before `connect` resolves).
 */
export async function connect(url, token, opts = {}) {
  // A cluster node answers a join for a room homed elsewhere with `redirect {url}`: follow it,
  // at most MAX_REDIRECTS times (a loop between nodes is an error, not a hang).
  const redirects = [];
  for (;;) {
    const r = await connectOnce(url, token, opts);
    if (r.room) {
      r.room.redirects = redirects;
      r.room.url = url;
      return r.room;
    }
    if (redirects.length >= MAX_REDIRECTS) throw new Error(`too many redirects: ${[url, ...redirects].join(' -> ')}`);
    redirects.push(r.redirect);
    url = r.redirect;
  }
}

/** Redirect hops `connect` follows. */
const MAX_REDIRECTS = 2;

async function connectOnce(url, token, opts) {
  const ws = new WebSocket(signalUrl(url, token));
  const room = new Room(ws, { autoSubscribe: true, ...opts });
  const early = [];
  let joined = null;
  let redirect = null;
  await new Promise((resolve, reject) => {
    let timer = setTimeout(() => reject(new Error('timeout joining')), REPLY_TIMEOUT_MS);
    ws.onopen = () => ws.send(JSON.stringify({
      type: 'join',
      req: 0,
      ...(opts.name ? { name: opts.name } : {}),
      ...(opts.p2p === false ? {} : { capabilities: ['p2p'] }),
    }));
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
      } else if (msg.type === 'redirect' && typeof msg.url === 'string' && !joined) {
        clearTimeout(timer);
        redirect = msg.url;
        ws.onclose = null;
        ws.close();
        resolve();
      } else if (msg.type === 'join_queued') {
        // A migration is running: the server admits us when it ends (bounded wait).
        clearTimeout(timer);
        timer = setTimeout(() => reject(new Error('timeout: queued join never admitted')), QUEUED_JOIN_MS);
        room.queued = { position: msg.position, estimated_wait_ms: msg.estimated_wait_ms };
        opts.onQueued?.(room.queued);
        room.emit('queued', room.queued);
      } else if (msg.type === 'error' && !joined) {
        clearTimeout(timer);
        reject(new SluiceError(msg));
      } else {
        early.push(msg);
      }
    };
  });
  if (redirect) return { redirect };
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
  return { room };
}

/** Backoff between rejoin attempts: doubles from the first, jittered, capped. */
// A node's death is seen when its lease runs out (a 2-3 s lease); the try after that joins, so
// the longest wait between tries is what a rejoin may lose on top (docs/decisions.md D70).
const REJOIN_FIRST_MS = 250;
const REJOIN_MAX_MS = 1000;
const REJOIN_ATTEMPTS = 60;

/**
 * Joins like `connect`, and stays joined: when the connection is lost without the client or the
 * server ending it on purpose (the node died: the socket closed; the node gave the room up:
 * `leave {reason: "reconnect"}`), it joins again through `url` — any node of a cluster; the
 * room is placed again there if its node is gone — with jittered backoff (at most
 * REJOIN_ATTEMPTS tries), republishes every track that was published, and calls
 * `onRoom(room, {attempt, ms})` with each new Room (the first one too). Resolves with the first
 * Room. New peer connections each time: DTLS state does not move between nodes.
 */
export async function stayJoined(url, token, opts = {}, onRoom = () => {}) {
  const watch = (room) => {
    room.on('disconnected', async ({ reason }) => {
      if (reason !== 'socket closed' && reason !== 'reconnect') return;
      const lostAt = Date.now();
      const tracks = [...room.publications.values()].map((p) => ({ track: p.track, opts: p.opts ?? {} }));
      let wait = REJOIN_FIRST_MS;
      for (let attempt = 1; attempt <= REJOIN_ATTEMPTS; attempt++) {
        await new Promise((r) => setTimeout(r, wait / 2 + Math.random() * wait / 2));
        wait = Math.min(wait * 2, REJOIN_MAX_MS);
        let next;
        try {
          next = await connect(url, token, opts);
        } catch {
          continue;
        }
        watch(next);
        for (const t of tracks) {
          if (t.track.readyState === 'live') await next.publish(t.track, t.opts).catch(() => {});
        }
        onRoom(next, { attempt, ms: Date.now() - lostAt });
        return;
      }
      onRoom(null, { attempt: REJOIN_ATTEMPTS, ms: Date.now() - lostAt });
    });
  };
  const first = await connect(url, token, opts);
  watch(first);
  onRoom(first, { attempt: 0, ms: 0 });
  return first;
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

export const Sluice = { connect, stayJoined, devToken, signalUrl, parseSections, rewriteCandidates, Room, SluiceError, DEFAULT_SIMULCAST };
export default Sluice;
