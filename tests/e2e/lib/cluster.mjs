// Several `sluice up` nodes on one real `redis-server` (issue 15): the Redis instance is the
// scenario's own, on a Unix socket in a temporary directory, stopped at the end. Also the checks
// every cluster scenario makes: media decoded from a participant, detection of a dead node,
// rejoin after a failover, and the nodes' own room lists.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { sleep, startSluice } from './sluice.mjs';

/** Starts `redis-server` on a Unix socket; resolves `{url, socket, stop()}` once it listens. */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  const socket = join(dir, 'redis.sock');
  const child = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exited = false;
  child.on('exit', () => (exited = true));
  const end = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (exited || Date.now() > end) throw new Error('redis-server did not start (tests/run.sh installs redis-server)');
    await sleep(50);
  }
  return {
    url: `unix:${socket}`,
    socket,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      const until = Date.now() + 3000;
      while (!exited && Date.now() < until) await sleep(50);
      if (!exited) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `redis-cli` against the scenario's Redis. */
export function cli(redis, ...args) {
  return execFileSync('redis-cli', ['-s', redis.socket, ...args]).toString().trim();
}

/** Several commands (arrays of words without spaces) in one `redis-cli` run: its output lines (one per reply, one per element of an array reply). */
export function cliBatch(redis, commands) {
  const out = execFileSync('redis-cli', ['-s', redis.socket], { input: commands.map((c) => c.join(' ')).join('\n') }).toString();
  return out.replace(/\n$/, '').split('\n');
}

/** Polls `fn` every `every` ms until it returns a truthy value (returned); throws `what` after `ms`. */
export async function waitFor(what, fn, { ms = 15_000, every = 100 } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? await what() : what}`);
    await sleep(every);
  }
}

/**
 * Nodes `ids` (one `sluice up` + dataplane with one worker each) on `redis`, sharing API keys.
 * `start(id)` starts (or, after a kill, restarts with a new boot) node `id`; `all` (given, or a
 * new array) gets every node process ever started here, for the final stop. `trunk`: the nodes
 * share one trunk secret file (cascading, docs/cluster.md "Cascading"; it lives beside Redis's
 * socket and goes with it). `node[id]`: that node's own `[cluster]` settings (`region`,
 * `capacity`, `media`, `relayGraceMs`) and `mediaPort`.
 */
export async function startNodes(redis, ids, { leaseMs = 2000, all = [], trunk = false, node = {} } = {}) {
  const apiSecret = randomBytes(16).toString('hex');
  let trunkSecretFile = null;
  if (trunk) {
    trunkSecretFile = join(dirname(redis.socket), 'trunk.secret');
    writeFileSync(trunkSecretFile, randomBytes(32), { mode: 0o600 });
  }
  const nodes = {};
  const start = async (id) => {
    const { mediaPort = null, ...own } = node[id] ?? {};
    nodes[id] = await startSluice({ workers: '1', mediaPort, cluster: { redis: redis.url, nodeId: id, leaseMs, apiSecret, trunkSecretFile, ...own } });
    nodes[id].id = id;
    nodes[id].apiSecret = apiSecret;
    all.push(nodes[id]);
    return nodes[id];
  };
  for (const id of ids) await start(id);
  await formed(nodes, ids.length);
  return { nodes, start, all, leaseMs };
}

/** Waits until each of `nodes` lists `count` live nodes, all `serving` (placed rooms: their dataplanes are connected). */
export async function formed(nodes, count) {
  for (const n of Object.values(nodes)) {
    if (n.exited) continue;
    let last = null;
    await waitFor(() => `cluster of ${count} serving nodes not formed at ${n.id}: ${JSON.stringify(last?.body?.nodes?.map((x) => [x.id, x.state]))}`, async () => {
      last = await n.api('GET', '/api/cluster');
      return last.status === 200 && last.body.nodes?.length === count && last.body.nodes.every((x) => x.state === 'serving');
    });
  }
}

/**
 * Runs `body(nodes, redis, cluster)` on a fresh Redis and nodes `ids`; the pages and tokens of
 * `ctx` go to the first node until the scenario sets `ctx.server` to another. ctx.close() stops
 * every node and then Redis after the pages — also when the runner gave up on the scenario
 * (timeout) while its body still runs.
 */
export async function withCluster(ctx, ids, body, opts = {}) {
  // The runner's own single node is not part of the cluster: stop it now (replacing ctx.server
  // without stopping it left it and its dataplane running after the suite).
  await ctx.server?.stop();
  ctx.server = null;
  const all = [];
  const redis = await startRedis();
  ctx.afterClose = async () => {
    await Promise.all(all.map((n) => n.stop()));
    await redis.stop();
  };
  const cluster = await startNodes(redis, ids, { ...opts, all });
  ctx.server = cluster.nodes[ids[0]];
  return body(cluster.nodes, redis, cluster);
}

/** A metric's value from a node's /metrics (null: not there). */
export async function metric(node, name) {
  const text = await fetch(`${node.origin}/metrics`).then((r) => r.text());
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : null;
}

/** The rooms `node` itself hosts (its local list: the request says it was forwarded). */
export async function ownRooms(node) {
  const res = await fetch(`${node.origin}/api/rooms`, {
    headers: { Authorization: `Bearer ${await node.adminToken()}`, 'sluice-forwarded-by': 'test' },
  });
  if (res.status !== 200) throw new Error(`${node.id}: GET /api/rooms (own) ${res.status} ${await res.text()}`);
  return (await res.json()).rooms;
}

/** Video (and audio) `page` decodes from `other`, polled until `frames` are decoded. */
export async function decodes(page, other, { frames = 40, ms = 20_000 } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await page.evaluate(async (otherIdentity) => {
      const room = window.sluice.room;
      const out = { video: null, audio: null };
      for (const s of room.subscriptions.values()) {
        if (room.participants.get(s.participantSid)?.identity !== otherIdentity) continue;
        (await s.receiver.getStats()).forEach((r) => {
          if (r.type === 'inbound-rtp') out[r.kind] = { framesDecoded: r.framesDecoded ?? 0, packetsReceived: r.packetsReceived ?? 0 };
        });
      }
      return out;
    }, other);
    if (got.video && got.video.framesDecoded >= frames && got.audio?.packetsReceived > 0) return got;
    if (Date.now() > end) {
      throw new Error(`${page.identity}: ${other}'s media not decoded within ${ms} ms: ${JSON.stringify(got)}\npage log:\n${
        await page.evaluate(() => window.sluice.log.slice(-12).join('\n'))}`);
    }
    await sleep(250);
  }
}

/** The sender's encoded video frame rate over `seconds` (its publisher's outbound-rtp). */
export async function senderFps(page, seconds) {
  const encoded = () => page.evaluate(async () => {
    const s = await window.sluice.room.stats();
    return (s.publisher ?? []).filter((r) => r.type === 'outbound-rtp' && r.kind === 'video').reduce((a, r) => a + (r.framesEncoded ?? 0), 0);
  });
  const a = await encoded();
  const t0 = Date.now();
  await sleep(seconds * 1000);
  return ((await encoded()) - a) / ((Date.now() - t0) / 1000);
}

/** Ms from `since` until `observer` no longer lists node `id` (lease expiry on Redis's clock). */
export async function detected(observer, id, since, ms = 20_000) {
  await waitFor(`${observer.id} still lists ${id}`, async () => {
    const r = await observer.api('GET', '/api/cluster');
    return r.status === 200 && !r.body.nodes.some((n) => n.id === id);
  }, { ms, every: 50 });
  return Date.now() - since;
}

/**
 * After its node went away at `since`: `page` rejoined (stayJoined) and decodes `other` again.
 * Resolves `{rejoinedMs, attempts, mediaMs, url}` (ms after `since`).
 */
export async function rejoinedAndDecoding(page, other, since, ms = 30_000) {
  const rejoin = await waitFor(async () => `${page.identity} did not rejoin: ${await page.evaluate(() => window.sluice.log.slice(-10).join('\n'))}`,
    () => page.evaluate((t) => window.sluice.rejoins.find((r) => r.ok && r.at >= t), since), { ms });
  await decodes(page, other, { frames: 10, ms });
  return { rejoinedMs: rejoin.at - since, attempts: rejoin.attempt, mediaMs: Date.now() - since, url: rejoin.url };
}

/** The `p` quantile (0..1) of `xs` (nearest rank). */
export function quantile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * Mints participant tokens in the test (thousands of joins: one `sluice token` process each is
 * too slow). The claims are those of a token `sluice token` minted, with room and identity
 * changed (`role`: a room has one host); the signature scheme is checked against that token first, so a change in the token
 * format fails here rather than as thousands of refused joins.
 */
export async function tokenMinter(node, role = 'viewer') {
  const sample = await node.token('mint-check', 'mint-check', role);
  const [head, payload, sig] = sample.split('.');
  const key = Buffer.from(node.apiSecret, 'utf8');
  const sign = (input) => createHmac('sha256', key).update(input).digest('base64url');
  if (sign(`${head}.${payload}`) !== sig) throw new Error('tokenMinter: HS256 over the API secret does not reproduce `sluice token`');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  return (room, identity) => {
    const p = b64url(JSON.stringify({ ...claims, room, sub: identity }));
    return `${head}.${p}.${sign(`${head}.${p}`)}`;
  };
}

/** The id of the node of `nodes` that `url` (http:, ws:, with or without /rtc) points at. */
export function nodeAt(nodes, url) {
  const host = new URL(url).host;
  return Object.keys(nodes).find((id) => new URL(nodes[id].origin).host === host);
}
