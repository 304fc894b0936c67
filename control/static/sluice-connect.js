// Getting a Room (docs/protocol.md `join`, docs/cluster.md "What a client sees"): the signaling
// URL, the join (following a cluster node's `redirect`, waiting out `join_queued`),
// `stayJoined`'s rejoin with backoff after a node is lost, and the dev-mode token.

import { Room } from './sluice-room.js';
import { REPLY_TIMEOUT_MS, SluiceError } from './sluice-signal.js';

// A queued join (a migration is running) may wait this long for `joined`.
const QUEUED_JOIN_MS = 45000;
/** Redirect hops `connect` follows. */
const MAX_REDIRECTS = 2;
/** Backoff between rejoin attempts: doubles from the first, jittered, capped. */
// A node's death is seen when its lease runs out (a 2-3 s lease); the try after that joins, so
// the longest wait between tries is what a rejoin may lose on top (docs/decisions.md D70).
const REJOIN_FIRST_MS = 250;
const REJOIN_MAX_MS = 1000;
const REJOIN_ATTEMPTS = 60;

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
 * Opens the signaling socket, joins, and resolves with a Room once `joined` arrived.
 * `opts`: `name`, `autoSubscribe` (default true; false sends nothing extra — subscribe per track
 * with `room.setSubscribed`), `e2eeKey` (shared passphrase: encrypt what we publish, decrypt what
 * we receive), `relay` ("ip:port": send media via that address; tests), `iceTransportPolicy`,
 * `autoRestart` (default true: ICE restart after the path stays down ~2 s), `p2p` (default true:
 * offer the P2P capability), `playAudio` (default true: play remote audio through the graph),
 * `audioGraph` (default true), `audioMeter` ('worklet' default, 'script': the ScriptProcessor
 * fallback), `onQueued({position, estimated_wait_ms})` (the join waits for a migration to end;
 * the room also emits `queued` then, before `connect` resolves), `data` (default false: the data
 * channels, see sluice.js).
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
