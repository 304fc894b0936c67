// Multi-node scenarios (issue 15): two real `sluice up` nodes sharing a real `redis-server`, real
// Chromium pages. The runner's own single node (ctx.server) is not used by these.

import { execFileSync } from 'node:child_process';

import { startNodes, startRedis } from './lib/cluster.mjs';
import { assertContinuity, fromSamples, samplePage } from './lib/continuity.mjs';
import { sleep } from './lib/sluice.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Video (and audio) `page` decodes from `other`, polled until `frames` are decoded. */
async function decodes(page, other, { frames = 40, ms = 20_000 } = {}) {
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
async function senderFps(page, seconds) {
  const encoded = () => page.evaluate(async () => {
    const s = await window.sluice.room.stats();
    return (s.publisher ?? []).filter((r) => r.type === 'outbound-rtp' && r.kind === 'video').reduce((a, r) => a + (r.framesEncoded ?? 0), 0);
  });
  const a = await encoded();
  const t0 = Date.now();
  await sleep(seconds * 1000);
  return ((await encoded()) - a) / ((Date.now() - t0) / 1000);
}

async function withCluster(ctx, ids, body) {
  const redis = await startRedis();
  let nodes = {};
  try {
    nodes = await startNodes(redis, ids);
    ctx.server = nodes[ids[0]]; // pages and tokens of ctx go to the first node
    return await body(nodes, redis);
  } finally {
    for (const n of Object.values(nodes)) if (n !== ctx.server) await n.stop();
    // ctx.close() stops ctx.server (node a) after the pages.
    ctx.afterClose = () => redis.stop();
  }
}

/** `redis-cli` against the scenario's Redis. */
function cli(redis, ...args) {
  return execFileSync('redis-cli', ['-s', redis.socket, ...args]).toString().trim();
}

/** A metric's value from a node's /metrics. */
async function metric(node, name) {
  const text = await fetch(`${node.origin}/metrics`).then((r) => r.text());
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : null;
}

export const clusterScenarios = {
  /**
   * A room homed on node b; alice's page is served by node a and redirected to b, bob joins
   * through b: each decodes the other, and alice's video at bob is continuous for 20 s.
   */
  async cluster_redirect(ctx) {
    await withCluster(ctx, ['a', 'b'], async ({ a, b }) => {
      const created = await b.api('POST', '/api/rooms', { name: 'c1' });
      check(created.status === 201, `create on b: ${JSON.stringify(created)}`);
      const alice = await ctx.openPage('chromium', await a.pageUrl('c1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await b.pageUrl('c1', 'bob', { role: 'controller' }), 'bob');
      const redirects = await alice.evaluate(() => window.sluice.redirects);
      check(redirects.length === 1 && redirects[0] === `${b.origin.replace('http:', 'ws:')}/rtc`, `alice's redirects ${JSON.stringify(redirects)}`);
      check((await bob.evaluate(() => window.sluice.redirects)).length === 0, 'bob was redirected');
      const [atAlice, atBob] = await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      // The room list through a names b; the participants through a are b's (forwarded).
      const list = await a.api('GET', '/api/rooms');
      check(list.body.rooms?.some((r) => r.name === 'c1' && r.node === 'b'), `rooms via a: ${JSON.stringify(list.body)}`);
      const parts = await a.api('GET', '/api/rooms/c1/participants');
      check(parts.body.participants?.length === 2, `participants via a: ${JSON.stringify(parts.body)}`);
      const fps = await senderFps(alice, 3);
      const c = fromSamples(await samplePage(bob, { seconds: 20 }));
      const continuity = assertContinuity('bob decodes alice (alice redirected a -> b)', c, { senderFps: fps, minWindowS: 19 });
      ctx.details = { redirects, aliceDecodesBob: atAlice.video, bobDecodesAlice: atBob.video, continuity };
    });
  },

  /**
   * kill -9 the node hosting a room: its participants (who entered through node b) join again
   * through b, the room is placed on b, media flows again. Prints detection and rejoin times.
   */
  async cluster_frozen_node(ctx) {
    await withCluster(ctx, ['a', 'b'], async ({ a, b }, redis) => {
      check((await a.api('POST', '/api/rooms', { name: 'f1' })).status === 201, 'create on a');
      const alice = await ctx.openPage('chromium', await b.pageUrl('f1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await b.pageUrl('f1', 'bob', { role: 'controller' }), 'bob');
      await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      ctx.server = b;
      // Freeze a's control daemon past its lease (2 s): b sweeps it; carol's join through b
      // places the room on b (epoch 2) while a still believes it is home.
      a.signal('SIGSTOP');
      const frozen = Date.now();
      const homes = new Set();
      const poll = setInterval(() => homes.add(cli(redis, 'HGET', 'sl:room:f1', 'home')), 100);
      try {
        const until = Date.now() + 15_000;
        while (cli(redis, 'ZSCORE', 'sl:nodes', 'a') !== '') {
          check(Date.now() < until, 'a not swept');
          await sleep(100);
        }
        const carol = await ctx.openPage('chromium', await b.pageUrl('f1', 'carol', { role: 'viewer', publish: 'none' }), 'carol');
        check(cli(redis, 'HGET', 'sl:room:f1', 'home') === 'b' && cli(redis, 'HGET', 'sl:room:f1', 'epoch') === '2', 'f1 not on b at epoch 2');
        await sleep(1000);
        a.signal('SIGCONT');
        const resumed = Date.now();
        // a's renewal is refused: it fences itself and tells alice and bob to reconnect.
        const fenceBy = Date.now() + 10_000;
        while ((await metric(a, 'sluice_cluster_fenced_total')) !== 1) {
          check(Date.now() < fenceBy, 'a did not fence itself');
          await sleep(100);
        }
        const fencedMs = Date.now() - resumed;
        check((await metric(a, 'sluice_cluster_home_rooms')) === 0, 'a still home of a room');
        await Promise.all([decodes(alice, 'bob', { frames: 10, ms: 30_000 }), decodes(bob, 'alice', { frames: 10, ms: 30_000 }), decodes(carol, 'alice', { frames: 10, ms: 30_000 })]);
        const rejoins = await Promise.all([alice, bob].map((p) => p.evaluate(() => window.sluice.rejoins.filter((r) => r.ok).length)));
        check(rejoins.every((n) => n >= 1), `rejoins ${rejoins}`);
        clearInterval(poll);
        check([...homes].every((h) => ['a', 'b', ''].includes(h)) && cli(redis, 'HGET', 'sl:room:f1', 'home') === 'b', `homes seen ${[...homes]}`);
        ctx.details = { frozenMs: resumed - frozen, fencedAfterResumeMs: fencedMs, homesSeen: [...homes], rejoins };
        console.log(`cluster_frozen_node: a frozen ${resumed - frozen} ms (lease 2000 ms), room re-placed on b (epoch 2), a fenced itself ${fencedMs} ms after SIGCONT, alice and bob rejoined on b`);
      } finally {
        clearInterval(poll);
        a.signal('SIGCONT');
      }
    });
  },

  async cluster_node_death(ctx) {
    await withCluster(ctx, ['a', 'b'], async ({ a, b }) => {
      const created = await a.api('POST', '/api/rooms', { name: 'd1' });
      check(created.status === 201, `create on a: ${JSON.stringify(created)}`);
      const alice = await ctx.openPage('chromium', await b.pageUrl('d1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await b.pageUrl('d1', 'bob', { role: 'controller' }), 'bob');
      check((await alice.evaluate(() => window.sluice.redirects)).length === 1, 'alice not redirected to a');
      await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      ctx.server = b; // a dies; ctx.close() stops b
      const killed = Date.now();
      a.killNode();
      // Detection: b's registry drops a (lease expiry, Redis clock).
      let detectedMs = null;
      const until = Date.now() + 20_000;
      while (detectedMs === null) {
        const r = await b.api('GET', '/api/cluster');
        if (r.status === 200 && !r.body.nodes.some((n) => n.id === 'a')) detectedMs = Date.now() - killed;
        check(Date.now() < until, `a still listed: ${JSON.stringify(r.body)}`);
        if (detectedMs === null) await sleep(50);
      }
      // Rejoin and media again, each page through b.
      const again = async (page, other) => {
        const end = Date.now() + 30_000;
        while (!(await page.evaluate(() => window.sluice.rejoins.some((r) => r.ok)))) {
          check(Date.now() < end, `${page.identity} did not rejoin: ${await page.evaluate(() => window.sluice.log.slice(-10).join('\n'))}`);
          await sleep(100);
        }
        const rejoin = await page.evaluate(() => window.sluice.rejoins.find((r) => r.ok));
        await decodes(page, other, { frames: 10, ms: 30_000 });
        return { rejoinedMs: rejoin.at - killed, attempts: rejoin.attempt, mediaMs: Date.now() - killed, url: rejoin.url };
      };
      const [ra, rb] = await Promise.all([again(alice, 'bob'), again(bob, 'alice')]);
      const list = await b.api('GET', '/api/rooms');
      check(list.body.rooms?.some((r) => r.name === 'd1' && r.node === 'b'), `d1 not on b: ${JSON.stringify(list.body)}`);
      const c = fromSamples(await samplePage(bob, { seconds: 5 }));
      check(c.frames > 0 && c.zeroSeconds === 0, `after failover: ${JSON.stringify(c)}`);
      ctx.details = { detectedMs, alice: ra, bob: rb, afterFailover: { frames: c.frames, longestFreezeMs: c.longestFreezeMs } };
      console.log(`cluster_node_death: lease 2000 ms; a's death detected by b after ${detectedMs} ms; alice rejoined ${ra.rejoinedMs} ms, media ${ra.mediaMs} ms; bob rejoined ${rb.rejoinedMs} ms, media ${rb.mediaMs} ms after kill -9`);
    });
  },
};
