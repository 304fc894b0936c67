// Liveness of the browser client's SFU path (docs/protocol.md "Client → server": `ping`,
// `resume`): the ping timer, the ICE restart asked for when a PC stays `disconnected`/`failed`
// (retried while the path stays down), the stall check that restarts a PC whose selected
// candidate pair stopped receiving while ICE still says `connected`, and `stats()`. Its state is
// `s.ice` (`iceState()`); the restart itself is `Room.resume()`. Functions take the Room's
// internals `s` (sluice-room.js `internals`).

const PING_INTERVAL_MS = 5000;
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

/** The liveness state of one Room. */
export function iceState() {
  return {
    pingTimer: null,
    restartTimer: null,
    stallTimer: null,
    // Per PC: the selected pair's receive counters, when they last changed, whether ever seen moving.
    progress: { publisher: { key: null, since: 0, moved: false }, subscriber: { key: null, since: 0, moved: false } },
    lastRestart: 0,
  };
}

/** Starts pinging and (unless `autoRestart: false`) the stall check. */
export function startLiveness(s) {
  s.ice.pingTimer = setInterval(() => s.room.ping().catch(() => {}), PING_INTERVAL_MS);
  if (s.opts.autoRestart !== false) {
    s.ice.stallTimer = setInterval(() => checkStall(s).catch(() => {}), STALL_CHECK_MS);
  }
}

/** Stops every liveness timer (the Room closed). */
export function stopLiveness(s) {
  clearInterval(s.ice.pingTimer);
  clearTimeout(s.ice.restartTimer);
  clearInterval(s.ice.stallTimer);
}

/** An SFU PC's ICE state changed: a restart is scheduled while it is down. */
export function onIceState(s, name, pc) {
  const state = pc.iceConnectionState;
  if (state === 'connected' || state === 'completed') {
    clearTimeout(s.ice.restartTimer);
    s.ice.restartTimer = null;
    return;
  }
  if ((state === 'disconnected' || state === 'failed') && !s.ice.restartTimer && s.opts.autoRestart !== false) {
    scheduleRestart(s);
  }
}

function scheduleRestart(s) {
  const wait = Math.max(RESTART_AFTER_MS, s.ice.lastRestart + RESTART_RETRY_MS - Date.now());
  s.ice.restartTimer = setTimeout(() => {
    s.ice.restartTimer = null;
    const bad = (pc) => pc && ['disconnected', 'failed'].includes(pc.iceConnectionState);
    if (s.closed || !(bad(s.pub) || bad(s.sub))) return;
    s.room.resume().catch((e) => s.room.emit('error', e));
    scheduleRestart(s);
  }, wait);
}

/** Restarts ICE when a connected PC's selected pair stopped receiving (see STALL_AFTER_MS). */
async function checkStall(s) {
  const now = Date.now();
  let stalled = false;
  for (const [name, pc] of [['publisher', s.pub], ['subscriber', s.sub]]) {
    const p = s.ice.progress[name];
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
  if (stalled && !s.closed && now - s.ice.lastRestart >= RESTART_RETRY_MS) await s.room.resume();
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

/** getStats of both SFU PCs (and of each P2P PC, by identity) as plain arrays of report objects, plus E2EE counters if any. */
export async function stats(s) {
  const flat = async (pc) => {
    const out = [];
    if (pc) (await pc.getStats()).forEach((r) => out.push({ ...r }));
    return out;
  };
  const p2p = {};
  for (const [sid, peer] of s.mesh?.peers ?? []) p2p[peer.identity ?? sid] = await flat(peer.pc);
  return {
    publisher: await flat(s.pub),
    subscriber: await flat(s.sub),
    p2p,
    mode: s.room.mode,
    e2ee: s.e2ee ? { ...s.e2ee.counters } : null,
    iceRestarts: s.room.iceRestarts,
  };
}
