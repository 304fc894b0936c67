// Hybrid P2P/SFU in the browser client (issue 8, docs/protocol.md "Hybrid P2P/SFU"): the
// migration a `mode_change` starts (hard cut or gradual; acknowledged with mode_ack, ended with
// mode_ready or mode_failed), the wait until the new path carries every remote participant's
// audio, the end a `mode_changed` brings (the old path goes after the grace period), and the
// tracks of the P2P mesh (sluice-mesh.js). Functions take the Room's internals `s` (sluice-room.js `internals`).

import { closeSfu, sfuPublish } from './sluice-sfu.js';

// How long the new path may take to carry every remote participant's audio before we report
// mode_failed; how often we check; how long we keep measuring after the switch.
const MIGRATE_WAIT_MS = 8000;
const MIGRATE_POLL_MS = 50;
const GAP_TAIL_MS = 300;

/** `mode_change`: acknowledged every time, migrated for once per id. */
export function onModeChange(s, msg) {
  const room = s.room;
  // Acknowledge every copy (the server resends until it hears one); act on an id only once.
  s.sig.send({ type: 'mode_ack', id: msg.id });
  if (s.seenModeChanges.has(msg.id)) return;
  s.seenModeChanges.add(msg.id);
  if (room.migration) room.migration.cancelled = true;
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
  room.migration = m;
  room.emit('migrating', { id: m.id, from: m.from, to: m.to, strategy: m.strategy, reason: m.reason });
  migrate(s, m).catch((e) => {
    if (m.cancelled || s.closed) return;
    s.sig.send({ type: 'mode_failed', id: m.id, reason: String(e.message ?? e) });
    room.emit('error', new Error(`migration ${m.id} to ${m.to} failed: ${e.message ?? e}`));
  });
}

async function migrate(s, m) {
  const audio = s.audio;
  // The gap is measured for participants the user hears right now (a newcomer we never heard
  // has no gap, only a start).
  const heard = audio?.running ? audio.audibleNow() : [];
  audio?.startGap();
  if (m.strategy === 'hard_cut') {
    // Old path down first, then the new one: everything new plays as soon as it arrives.
    if (m.to === 'sfu') closeMesh(s);
    else closeSfu(s);
    audio?.switchTo(m.to);
  }
  if (m.to === 'sfu') {
    s.sfuLive = true;
    await sfuPublish(s);
    await until(s, m, () => sfuMissing(s), 'SFU audio');
  } else {
    buildMesh(s);
    await until(s, m, () => meshMissing(s), 'P2P audio');
  }
  if (m.cancelled) return;
  audio?.switchTo(m.to);
  m.switched = performance.now();
  if (heard.length) await new Promise((r) => setTimeout(r, GAP_TAIL_MS));
  if (m.cancelled) return;
  const gaps = heard.length ? audio.gaps(heard) : {};
  const values = Object.values(gaps).filter((v) => v !== null);
  const gap = values.length ? Math.max(...values) : null;
  s.room.lastMigration = {
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
  s.sig.send({ type: 'mode_ready', id: m.id, ...(gap === null ? {} : { audio_gap_ms: gap }) });
}

/**
 * Polls `missing()` (what the new path still lacks, '' when nothing; throws when the path
 * failed) until it is ''; bounded by MIGRATE_WAIT_MS.
 */
async function until(s, m, missing, what) {
  const end = performance.now() + MIGRATE_WAIT_MS;
  while (!m.cancelled && !s.closed) {
    const lack = missing();
    if (!lack) return;
    if (performance.now() > end) throw new Error(`timeout: ${what} not ready within ${MIGRATE_WAIT_MS} ms (${lack})`);
    await new Promise((r) => setTimeout(r, MIGRATE_POLL_MS));
  }
}

/** Remote participants that publish unmuted audio. */
function audioPublishers(room) {
  return [...room.participants.values()].filter((p) => [...p.tracks.values()].some((t) => t.kind === 'audio' && !t.muted));
}

/** What the SFU path still lacks ('' when every remote audio plays over it). */
function sfuMissing(s) {
  const room = s.room;
  for (const [name, pc] of [['publisher', s.pub], ['subscriber', s.sub]]) {
    if (pc.connectionState === 'failed') throw new Error(`sfu_pc_failed: ${name}`);
  }
  if (room.publications.size > 0 && s.pub.connectionState !== 'connected') return `publisher ${s.pub.connectionState}`;
  // With a running graph "arrived" means the audio plays; without one (or suspended by the
  // autoplay policy) that the track is there.
  const metered = s.audio?.running;
  const silent = audioPublishers(room).filter((p) => {
    if (metered) return !s.audio.pathPlays(p.identity, 'sfu');
    return ![...room.subscriptions.values()].some((x) => x.participantSid === p.sid && x.track.kind === 'audio');
  });
  return silent.length ? `no SFU audio from ${silent.map((p) => p.identity).join(', ')}` : '';
}

/** What the mesh still lacks ('' when connected to everyone and every remote audio plays). */
function meshMissing(s) {
  const room = s.room;
  if (!s.mesh) throw new Error('p2p_unsupported');
  for (const p of room.participants.values()) {
    const peer = s.mesh.peers.get(p.sid);
    if (!peer) return `no P2P PC to ${p.identity}`;
    if (peer.pc.connectionState === 'failed') throw new Error(`p2p_failed: ${p.identity}`);
    if (peer.pc.connectionState !== 'connected') return `P2P to ${p.identity} ${peer.pc.connectionState}`;
  }
  const metered = s.audio?.running;
  const silent = audioPublishers(room).filter((p) => {
    if (metered) return !s.audio.pathPlays(p.identity, 'p2p');
    return ![...room.p2pSubscriptions.values()].some((x) => x.participantSid === p.sid && x.track.kind === 'audio');
  });
  return silent.length ? `no P2P audio from ${silent.map((p) => p.identity).join(', ')}` : '';
}

/** P2P after SFU: the greater sid offers; the other side waits for that offer. */
function buildMesh(s) {
  if (!s.mesh) throw new Error('p2p_unsupported');
  for (const p of s.room.participants.values()) {
    if (s.mesh.peers.has(p.sid)) continue;
    if (s.room.participant.sid > p.sid) s.mesh.connect(p.sid, p.identity);
  }
}

function closeMesh(s) {
  for (const peer of s.mesh?.closeAll() ?? []) dropMeshPeer(s, peer);
}

/** `mode_changed`: the room's mode now; ends our migration (or takes the server's word for it). */
export function onModeChanged(s, msg) {
  const room = s.room;
  // The end of an older migration while a newer one runs: the newer one decides.
  if (room.migration && room.migration.id !== msg.id) return;
  const m = room.migration;
  const mode = msg.mode === 'p2p' ? 'p2p' : 'sfu';
  room.mode = mode;
  if (m) {
    room.migration = null;
    if (room.lastMigration?.id === msg.id) room.lastMigration.duration_ms = Math.round(performance.now() - m.started);
    if (!m.readySent) {
      // The server finished without our mode_ready (a fallback, say): take its word for it.
      m.cancelled = true;
      s.audio?.switchTo(mode);
      if (mode === 'p2p' && s.mesh) buildMesh(s);
      if (mode === 'sfu') {
        s.sfuLive = true;
        sfuPublish(s).catch((e) => room.emit('error', e));
      }
    }
  }
  // The old path goes after the grace period (gradual), unless the room moved on meanwhile.
  const closeOld = () => {
    if (s.closed || room.mode !== mode || room.migration) return;
    if (mode === 'sfu') closeMesh(s);
    else if (s.sfuLive) closeSfu(s);
  };
  if (m?.strategy === 'gradual') setTimeout(closeOld, m.grace_ms);
  else closeOld();
  room.emit('mode', { mode, id: msg.id, migration: room.lastMigration?.id === msg.id ? room.lastMigration : null });
}

// ---- the mesh's tracks ----------------------------------------------------------------------

/** A remote track on a P2P PC: tied to the sender's TrackInfo of that kind not yet matched. */
export function onMeshTrack(s, peer, ev) {
  const room = s.room;
  const track = ev.track;
  const participant = room.participants.get(peer.sid);
  const taken = new Set([...room.p2pSubscriptions.values()].filter((x) => x.participantSid === peer.sid).map((x) => x.trackSid));
  const info = [...(participant?.tracks.values() ?? [])].find((t) => t.kind === track.kind && !taken.has(t.sid));
  const sub = { trackSid: info?.sid ?? `p2p-${peer.sid}-${track.id}`, track, participantSid: peer.sid, receiver: ev.receiver, path: 'p2p' };
  const key = `${peer.sid}/${track.id}`;
  if (room.p2pSubscriptions.has(key)) return;
  room.p2pSubscriptions.set(key, sub);
  if (track.kind === 'audio') s.audio?.addTrack(peer.identity, 'p2p', track);
  room.emit('track_subscribed', { ...sub, participant, info });
}

/** Forgets the P2P tracks of a closed mesh peer. */
export function dropMeshPeer(s, peer) {
  if (!peer) return;
  for (const [key, sub] of [...s.room.p2pSubscriptions]) {
    if (sub.participantSid !== peer.sid) continue;
    s.room.p2pSubscriptions.delete(key);
    s.room.emit('track_unsubscribed', sub);
  }
  s.audio?.removeTrack(peer.identity, 'p2p');
}
