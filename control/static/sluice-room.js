// The Room of the browser client: its public state, methods and getters (documented in
// sluice.js, which re-exports it), and its internals `s` (`internals` below), the one object the
// other modules work on: sluice-sfu.js (the two SFU PCs), sluice-hybrid.js (P2P/SFU migration),
// sluice-ice.js (ping, ICE restart, stall check, stats) and sluice-dispatch.js (server messages).
// The internals live in a private field, so they are no more reachable from outside than the
// private fields they replace.

import { AudioOutput } from './sluice-audio.js';
import { controlHolder, sendInput } from './sluice-data.js';
import { addParticipant, dispatch } from './sluice-dispatch.js';
import { onMeshTrack } from './sluice-hybrid.js';
import { iceState, startLiveness, stats, stopLiveness } from './sluice-ice.js';
import { Mesh } from './sluice-mesh.js';
import { Emitter, REPLY_TIMEOUT_MS, Signaling, timeout } from './sluice-signal.js';
import { addPubTransceiver, negotiatePublisher, openSfuPcs, setupE2ee, sfuPublish } from './sluice-sfu.js';

/** Simulcast layers offered by `publish(track, {simulcast: true})`, low to high. */
export const DEFAULT_SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** A Room's internals (not API): what the Room and its sibling modules share. */
function internals(room, ws, opts) {
  return {
    room,
    opts,
    sig: new Signaling(ws),
    // The SFU publisher and subscriber PCs; one offer/answer at a time on each.
    pub: null,
    sub: null,
    pubQueue: Promise.resolve(),
    subQueue: Promise.resolve(),
    // parseSections of the last subscriber offer (track sids by mid).
    sections: [],
    // Ping, restart and stall-check timers (sluice-ice.js).
    ice: iceState(),
    closed: false,
    e2ee: null, // {worker, counters} or {worker: null, counters, key, mod}
    pcConfig: null,
    mesh: null,
    audio: null,
    seenModeChanges: new Set(),
    // Whether the SFU PCs carry media (SFU mode, or being built during a migration to SFU).
    sfuLive: true,
    // The data channels on the current publisher PC (opts.data), created with its first offer.
    data: null,
    control: controlHolder(room),
  };
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

  #s;

  constructor(ws, opts) {
    super();
    this.#s = internals(this, ws, opts);
  }

  // ---- connection -------------------------------------------------------------------------

  async _start(joined) {
    const s = this.#s;
    this.room = joined.room;
    this.participant = joined.participant;
    for (const p of joined.participants ?? []) addParticipant(this, p);
    const config = {
      iceServers: (joined.ice_servers ?? []).map((x) => ({ ...x })),
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      ...(s.opts.iceTransportPolicy ? { iceTransportPolicy: s.opts.iceTransportPolicy } : {}),
    };
    if (s.opts.e2eeKey) {
      await setupE2ee(s, s.opts.e2eeKey);
      // Chromium without RTCRtpScriptTransform needs the PC flag at construction.
      if (!s.e2ee.worker) config.encodedInsertableStreams = true;
    }
    s.pcConfig = config;
    this.mode = joined.mode?.mode === 'p2p' ? 'p2p' : 'sfu';
    this.modeSetting = joined.mode?.setting ?? null;
    s.sfuLive = this.mode === 'sfu';
    if (s.opts.audioGraph !== false && typeof AudioContext !== 'undefined') {
      s.audio = new AudioOutput({
        path: this.mode,
        play: s.opts.playAudio !== false,
        onAudio: (identity, path) => this.emit('remote_audio', { identity, path }),
        meter: s.opts.audioMeter,
      });
      await s.audio.ready();
    }
    if (s.opts.p2p !== false) {
      s.mesh = new Mesh({
        // The SFU PCs' ICE servers (TURN credentials from `joined.ice_servers`), no E2EE flag.
        config: { ...config, encodedInsertableStreams: undefined },
        send: (m) => s.sig.send(m),
        onTrack: (peer, ev) => onMeshTrack(s, peer, ev),
        onState: (peer) => this.emit('p2p_state', { identity: peer.identity, sid: peer.sid, state: peer.pc.connectionState }),
        localTracks: () => [...this.publications.values()].map((p) => ({ track: p.track, stream: p.stream })),
      });
    }
    openSfuPcs(s);
    // Not awaited: the answer arrives on the socket, whose messages are held until we return.
    if (s.opts.data && s.sfuLive) sfuPublish(s).catch((e) => this.emit('error', e));
    // P2P: a new member offers to everyone already here (they wait for our offer) — unless the
    // room is already moving to SFU (our join started it): the mode_change follows, and a
    // fallback to P2P rebuilds the mesh on both sides (greater sid offers).
    if (this.mode === 'p2p' && s.mesh && joined.mode?.migrating?.to !== 'sfu') {
      for (const p of this.participants.values()) s.mesh.connect(p.sid, p.identity);
    }
    startLiveness(s);
    this.emit('joined', { room: this.room, participant: this.participant });
  }

  /** The publisher and subscriber PCs, for tests and advanced use. */
  get pcs() {
    return { publisher: this.#s.pub, subscriber: this.#s.sub };
  }

  get role() {
    return this.participant?.role;
  }

  get identity() {
    return this.participant?.identity;
  }

  /** The P2P PCs by remote participant sid (empty in SFU mode). */
  get p2pPcs() {
    return new Map([...(this.#s.mesh?.peers ?? new Map())].map(([sid, p]) => [sid, p.pc]));
  }

  /** The AudioNode carrying what the user hears from `identity` (null: no audio from them yet / no graph). */
  audioOutput(identity) {
    return this.#s.audio?.output(identity) ?? null;
  }

  /** Whether the library plays remote audio itself (then apps must not play audio tracks too). */
  get playsAudio() {
    return !!this.#s.audio && this.#s.opts.playAudio !== false;
  }

  /** The AudioContext of the remote-audio graph (null without one). */
  get audioContext() {
    return this.#s.audio?.ctx ?? null;
  }

  // ---- publishing -------------------------------------------------------------------------

  /**
   * Publishes a local track. `opts.source`: camera|microphone|screen|screen_audio (default from
   * the kind); `opts.simulcast`: true for DEFAULT_SIMULCAST or an array of
   * `{rid, scaleResolutionDownBy, maxBitrate}`; `opts.name`, `opts.muted`.
   * Resolves with the server's TrackInfo once `track_published` arrived and the offer is answered.
   */
  async publish(track, opts = {}) {
    const s = this.#s;
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
      ...(s.e2ee ? { e2ee: true } : {}),
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
    const published = s.sig.waitFor((m) => m.type === 'track_published' && m.cid === cid);
    const req = s.sig.send(msg);
    const refused = s.sig.errorFor(req);
    const stream = new MediaStream([track]);
    // In P2P mode the SFU publisher stays idle: the track goes to the mesh once the server said yes.
    const transceiver = s.sfuLive ? addPubTransceiver(s, track, stream, layers, opts.codec) : null;
    try {
      if (transceiver) await Promise.race([negotiatePublisher(s), refused.promise]);
      const reply = await Promise.race([published.promise, refused.promise, timeout('track_published')]);
      const info = reply.track;
      const pubn = { trackSid: info.sid, cid, track, stream, layers, codec: opts.codec, opts, sender: transceiver?.sender ?? null, transceiver, info };
      this.publications.set(info.sid, pubn);
      if (s.mesh?.peers.size) s.mesh.addTrack(track, stream);
      // A migration to SFU began while we waited: the track joins the SFU publisher too.
      if (s.sfuLive && !transceiver) await sfuPublish(s);
      return info;
    } catch (e) {
      published.cancel();
      if (transceiver) s.pub.removeTrack(transceiver.sender);
      throw e;
    } finally {
      refused.cancel();
    }
  }

  /** Stops publishing a track (by track sid or the MediaStreamTrack itself). */
  async unpublish(trackOrSid) {
    const s = this.#s;
    const pubn = this.#publication(trackOrSid);
    if (!pubn) throw new Error('not published');
    this.publications.delete(pubn.trackSid);
    s.sig.send({ type: 'unpublish', track_sid: pubn.trackSid });
    s.mesh?.removeTrack(pubn.track);
    if (!pubn.sender) return;
    s.pub.removeTrack(pubn.sender);
    await negotiatePublisher(s);
  }

  /** Mutes/unmutes a local publication: the track stops sending and the room is told. */
  setMuted(trackOrSid, muted) {
    const pubn = this.#publication(trackOrSid);
    if (!pubn) throw new Error('not published');
    pubn.track.enabled = !muted;
    this.#s.sig.send({ type: 'mute', track_sid: pubn.trackSid, muted: !!muted });
  }

  /** Asks the server for at most `spatial` (0..2) of a simulcast track, optionally `temporal`. */
  setLayer(trackSid, spatial, temporal) {
    this.#s.sig.send({
      type: 'layer',
      track_sid: trackSid,
      max_spatial: spatial,
      ...(temporal === undefined ? {} : { max_temporal: temporal }),
    });
  }

  /** Subscribes to / unsubscribes from a remote track (auto-subscribe is the server default). */
  setSubscribed(trackSid, subscribe) {
    this.#s.sig.send({ type: 'subscribe', track_sid: trackSid, subscribe: !!subscribe });
  }

  #publication(trackOrSid) {
    if (typeof trackOrSid === 'string') return this.publications.get(trackOrSid);
    for (const p of this.publications.values()) if (p.track === trackOrSid) return p;
    return undefined;
  }

  // ---- data channels ----------------------------------------------------------------------

  /**
   * Sends `data` (a string, ArrayBuffer or typed array; at most 64 KiB with the envelope) to the
   * room, or to the identities in `destinations` (alias `to`). `reliable: false` uses `_lossy`:
   * unordered, never retransmitted, dropped by the server for a receiver that is behind.
   * Throws when the channels are not open (join with `{data: true}`, SFU mode).
   */
  send(data, { reliable = true, destinations, to } = {}) {
    const link = this.#s.data;
    if (!link?.open) throw new Error('data channels are not open (connect with {data: true}; they need the SFU path)');
    link.send(data, { reliable, to: destinations ?? to ?? [] });
  }

  /** Resolves once both data channels are open (rejects after `ms`). */
  dataReady(ms = REPLY_TIMEOUT_MS) {
    if (this.#s.data?.open) return Promise.resolve();
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
    return this.#s.data?.channels ?? null;
  }

  // ---- roles and control ------------------------------------------------------------------

  /** Controller: ask the host for control. */
  requestControl() {
    this.#s.sig.send({ type: 'request_control' });
  }

  /** Host: grant control to `identity`. */
  grantControl(identity) {
    this.#s.sig.send({ type: 'grant_control', identity });
  }

  /** Host: revoke control from `identity`. */
  revokeControl(identity) {
    this.#s.sig.send({ type: 'revoke_control', identity });
  }

  /** Host: hand the host role to `identity`. */
  transferHost(identity) {
    this.#s.sig.send({ type: 'transfer_host', identity });
  }

  /** Granted controller: input (any JSON) to the host, on `_input` when open and routed (`input_route`), else the WebSocket (`via` forces one: sluice-data.js); returns the path. */
  sendInput(event, { via } = {}) {
    const s = this.#s;
    return sendInput(s.data, s.control, event, via, (e) => s.sig.send({ type: 'input', event: e }));
  }

  /** Updates the participant's metadata (needs can_update_metadata). */
  updateMetadata(metadata) {
    this.#s.sig.send({ type: 'update_metadata', metadata });
  }

  // ---- liveness, restart, stats ------------------------------------------------------------

  /** Sends `ping`, resolves with the round trip in ms. */
  async ping() {
    const t = Date.now();
    await this.#s.sig.call({ type: 'ping', t }, (m) => m.type === 'pong' && m.t === t);
    this.rtt = Date.now() - t;
    return this.rtt;
  }

  /**
   * ICE restart after a network change: `resume` makes the server send a fresh subscriber offer
   * with new ICE credentials; the publisher restarts from our side with an iceRestart offer.
   */
  async resume() {
    const s = this.#s;
    if (s.closed) return;
    s.ice.lastRestart = Date.now();
    this.iceRestarts++;
    this.emit('ice_restart', { count: this.iceRestarts });
    s.sig.send({ type: 'resume' });
    if (this.publications.size > 0) await negotiatePublisher(s, { iceRestart: true });
  }

  /** getStats of both SFU PCs (and of each P2P PC, by identity) as plain arrays of report objects, plus E2EE counters if any. */
  async stats() {
    return stats(this.#s);
  }

  // ---- messages and the end ----------------------------------------------------------------

  _onMessage(msg) {
    dispatch(this.#s, msg);
  }

  /** Leaves the room and closes both PCs and the socket. */
  leave() {
    if (this.#s.closed) return;
    this.#s.sig.send({ type: 'leave' });
    this._close('client');
  }

  _close(reason) {
    const s = this.#s;
    if (s.closed) return;
    s.closed = true;
    stopLiveness(s);
    s.pub?.close();
    s.sub?.close();
    s.mesh?.closeAll();
    s.audio?.close();
    s.e2ee?.worker?.terminate();
    s.sig.close(reason);
    this.emit('disconnected', { reason });
  }
}
