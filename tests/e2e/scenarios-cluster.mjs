// Multi-node scenarios (issue 15): three real `sluice up` nodes (control + dataplane, one worker
// each) sharing a real `redis-server`, real Chromium pages and aiortc. The runner's own single
// node (ctx.server) is not used by these. Failover and drain: scenarios-cluster-failover.mjs.

import WebSocket from 'ws';

import { cli, cliBatch, decodes, metric, ownRooms, senderFps, tokenMinter, waitFor, withCluster } from './lib/cluster.mjs';
import { assertContinuity, fromSamples, samplePage } from './lib/continuity.mjs';
import { sleep } from './lib/sluice.mjs';
import { clusterFailoverScenarios } from './scenarios-cluster-failover.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const wsUrl = (node) => `${node.origin.replace('http:', 'ws:')}/rtc`;

/** One WebSocket join at `url`: resolves `{ws}` (joined), `{redirect}` or `{error}`. */
function joinOnce(url, token) {
  return new Promise((ok) => {
    const ws = new WebSocket(`${url}?access_token=${token}`);
    let settled = false;
    const done = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.ws) ws.terminate();
      ok(r);
    };
    const timer = setTimeout(() => done({ error: 'no answer in 10 s' }), 10_000);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'join' })));
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === 'joined') done({ ws });
      else if (m.type === 'redirect') done({ redirect: m.url });
      else if (m.type === 'error') done({ error: m.code ?? 'error', message: m.message });
    });
    ws.on('error', (e) => done({ error: e.message }));
    ws.on('close', () => done({ error: 'closed before joined' }));
  });
}

/** A join as `sluice.js` makes it: follows at most 2 redirects; `{ws, url}` where it joined. */
async function wsJoin(url, token) {
  for (let hop = 0; ; hop++) {
    const r = await joinOnce(url, token);
    if (!r.redirect) return { ...r, url };
    if (hop === 2) return { error: `too many redirects (${r.redirect})` };
    url = r.redirect;
  }
}

export const clusterScenarios = {
  /**
   * A room homed on node b of three. The placement API asked on a, b and c names b; alice's page
   * enters through a and bob's through c, both redirected to b, and decode each other; an aiortc
   * WHIP publisher sent to a and a WHEP player sent to c follow the 307 to b, media flows; bob
   * decodes alice continuously for 20 s.
   */
  async cluster_redirect(ctx) {
    await withCluster(ctx, ['a', 'b', 'c'], async ({ a, b, c }) => {
      const created = await b.api('POST', '/api/rooms', { name: 'c1' });
      check(created.status === 201, `create on b: ${JSON.stringify(created)}`);
      const placements = {};
      for (const n of [a, b, c]) {
        const r = await n.api('POST', '/api/rooms/c1/placement', { identity: `zoe-${n.id}` });
        check(r.status === 200 && r.body.node === 'b' && r.body.whip === `${b.origin}/whip/c1`, `placement via ${n.id}: ${JSON.stringify(r)}`);
        placements[n.id] = r.body.node;
      }
      const alice = await ctx.openPage('chromium', await a.pageUrl('c1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await c.pageUrl('c1', 'bob', { role: 'controller' }), 'bob');
      const redirects = { alice: await alice.evaluate(() => window.sluice.redirects), bob: await bob.evaluate(() => window.sluice.redirects) };
      for (const [who, r] of Object.entries(redirects)) check(r.length === 1 && r[0] === wsUrl(b), `${who}'s redirects ${JSON.stringify(r)}`);
      const [atAlice, atBob] = await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      // WHIP through a, WHEP through c: each is sent to b (307) and media flows there.
      const publishing = ctx.aiortc(['whip', '--url', `${a.origin}/whip/c1`, '--token', await a.token('c1', 'whip', 'controller'), '--seconds', '7'], 40_000);
      publishing.catch(() => {});
      await sleep(2000);
      const play = await ctx.aiortc(['whep', '--url', `${c.origin}/whep/c1`, '--token', await c.token('c1', 'whep', 'viewer'), '--seconds', '4'], 40_000);
      const pub = await publishing;
      check(JSON.stringify(pub.redirects) === JSON.stringify([`${b.origin}/whip/c1`]) && pub.resource?.startsWith(`${b.origin}/whip/c1/`), `WHIP via a: ${JSON.stringify(pub)}`);
      check(JSON.stringify(play.redirects) === JSON.stringify([`${b.origin}/whep/c1`]) && play.video_frames >= 30, `WHEP via c: ${JSON.stringify({ ...play, video_times_ms: undefined })}`);
      check(pub.delete_status === 200 && play.delete_status === 200, `DELETE of the resources on b: ${pub.delete_status} ${play.delete_status}`);
      // The room list through a names b; the participants through c are b's (forwarded).
      const list = await a.api('GET', '/api/rooms');
      check(list.body.rooms?.filter((r) => r.name === 'c1').map((r) => r.node).join() === 'b', `rooms via a: ${JSON.stringify(list.body)}`);
      const parts = await c.api('GET', '/api/rooms/c1/participants');
      check(parts.body.participants?.length >= 2, `participants via c: ${JSON.stringify(parts.body)}`);
      const fps = await senderFps(alice, 3);
      const cont = fromSamples(await samplePage(bob, { seconds: 20 }));
      const continuity = assertContinuity('bob (entered via c) decodes alice (entered via a), both on b', cont, { senderFps: fps, minWindowS: 19 });
      // The registry carries each node's dataplane load from its shards' own stats (issue 15
      // Build 2, D93): b forwards two pages' media, a and c forward none.
      const reg = await a.api('GET', '/api/cluster');
      const load = Object.fromEntries((reg.body.nodes ?? []).map((n) => [n.id, { participants: n.load, ...n.dataplane }]));
      console.log(`cluster_redirect: dataplane load per node ${JSON.stringify(load)}`);
      check(load.b?.pps > 100 && load.b?.sessions >= 4 && load.b?.busy > 0, `b's dataplane load: ${JSON.stringify(load)}`);
      check(load.a?.pps < load.b.pps / 10 && load.c?.pps < load.b.pps / 10, `a and c carry no media: ${JSON.stringify(load)}`);
      ctx.details = {
        placements, redirects, aliceDecodesBob: atAlice.video, bobDecodesAlice: atBob.video,
        whip: { redirects: pub.redirects, sent: pub.packets_sent }, whep: { redirects: play.redirects, frames: play.video_frames }, continuity, load,
      };
    });
  },

  /**
   * Placement race over three real nodes: 200 rounds of 30 concurrent WebSocket joins (3 fresh
   * rooms a round, each join sent to a random node after a random delay of up to 20 ms, following
   * redirects), and every Redis client connection killed in the middle of round 100. After each
   * round, while every joined socket is open: each room's joins all landed on one node, that node
   * is the room's home in Redis, and of the three nodes' own room lists exactly that one holds
   * the room, with as many participants as joined.
   */
  async cluster_race(ctx) {
    await withCluster(ctx, ['a', 'b', 'c'], async (nodes, redis) => {
      const ids = Object.keys(nodes);
      const byUrl = Object.fromEntries(ids.map((id) => [wsUrl(nodes[id]), id]));
      const mint = await tokenMinter(nodes.a);
      const [rounds, burst] = [200, 30];
      let seed = 0x5eed1234;
      const rand = () => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % 1_000_000;
      };
      const errors = {};
      const messages = {};
      const homes = { a: 0, b: 0, c: 0 };
      let joined = 0;
      const t0 = Date.now();
      for (let round = 0; round < rounds; round++) {
        const joins = [];
        for (let j = 0; j < burst; j++) {
          const room = `r${round}-${j % 3}`;
          const entry = nodes[ids[rand() % 3]];
          const delay = rand() % 20;
          joins.push(sleep(delay).then(() => wsJoin(wsUrl(entry), mint(room, `p${j}`))).then((r) => ({ room, ...r })));
        }
        if (round === rounds / 2) {
          await sleep(5);
          cli(redis, 'CLIENT', 'KILL', 'TYPE', 'normal');
        }
        const results = await Promise.all(joins);
        for (const r of results.filter((x) => !x.ws)) {
          errors[r.error] = (errors[r.error] ?? 0) + 1;
          messages[r.error] ??= r.message;
        }
        // Each room: its joins on one node, the home in Redis (epoch 1), and of the three
        // nodes' own lists only the home's holds it, with every participant that joined (a
        // node's list is updated just after it answers `joined`: polled for a moment).
        const names = [0, 1, 2].map((k) => `r${round}-${k}`);
        const stored = cliBatch(redis, names.map((room) => ['HMGET', `sl:room:${room}`, 'home', 'epoch']));
        const rooms = names.map((room, k) => ({
          room,
          on: results.filter((r) => r.room === room && r.ws).map((r) => byUrl[r.url]),
          home: stored[2 * k],
          epoch: stored[2 * k + 1],
        })).filter((r) => r.on.length);
        for (const { room, on, home, epoch } of rooms) {
          check(on.every((n) => n === home) && epoch === '1', `${room}: joined on ${on}, home in Redis ${home} (epoch ${epoch})`);
        }
        let problem = null;
        await waitFor(() => problem, async () => {
          const own = Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await ownRooms(nodes[id])])));
          problem = null;
          for (const { room, on, home } of rooms) {
            const holders = ids.filter((id) => own[id].some((r) => r.name === room));
            const held = own[home]?.find((r) => r.name === room)?.num_participants;
            if (holders.length !== 1 || holders[0] !== home || held !== on.length) problem = `${room}: held by ${holders} (home ${home}) with ${held} participants, ${on.length} joined`;
          }
          return problem === null;
        }, { ms: 5000, every: 20 });
        for (const { on, home } of rooms) {
          homes[home] += 1;
          joined += on.length;
        }
        for (const r of results) r.ws?.close();
      }
      const seconds = (Date.now() - t0) / 1000;
      const failed = Object.values(errors).reduce((x, y) => x + y, 0);
      check(failed < burst, `${failed} joins failed (a connection kill costs one burst at most): ${JSON.stringify(errors)} ${JSON.stringify(messages)}`);
      check(ids.every((id) => homes[id] > rounds / 2), `homes per node ${JSON.stringify(homes)}`);
      const fenced = await Promise.all(ids.map((id) => metric(nodes[id], 'sluice_cluster_fenced_total')));
      ctx.details = { joins: rounds * burst, joined, failed: errors, rooms: rounds * 3, homes, fenced, seconds };
      ctx.note = `cluster_race: ${rounds * burst} joins in ${rounds} bursts of ${burst} over 3 nodes in ${seconds.toFixed(1)} s: ${joined} joined, every room on one node (its home, epoch 1; homes ${JSON.stringify(homes)}), ${failed} failed across the Redis connection kill ${JSON.stringify(errors)}`;
    });
  },

  /**
   * Freeze the home's control daemon (SIGSTOP) past its 2 s lease, with three nodes: alice and
   * bob entered through b and c. b sweeps a; carol's join through b places the room on b (epoch
   * 2) while a still believes it is home. On SIGCONT a's renewal is refused: it fences itself,
   * registers again and re-claims what it hosts — refused for f1 (b holds it), so a gives f1 up
   * and tells its clients to reconnect (D83); alice and bob rejoin (through b and c) on b, all
   * decode each other; the room's home read every 100 ms was only ever a, none, b.
   */
  async cluster_frozen_node(ctx) {
    await withCluster(ctx, ['a', 'b', 'c'], async ({ a, b, c }, redis) => {
      check((await a.api('POST', '/api/rooms', { name: 'f1' })).status === 201, 'create on a');
      const alice = await ctx.openPage('chromium', await b.pageUrl('f1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await c.pageUrl('f1', 'bob', { role: 'controller' }), 'bob');
      await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      ctx.server = b;
      a.signal('SIGSTOP');
      const frozen = Date.now();
      const homes = new Set();
      const poll = setInterval(() => homes.add(cli(redis, 'HGET', 'sl:room:f1', 'home')), 100);
      try {
        await waitFor('a not swept', () => cli(redis, 'ZSCORE', 'sl:nodes', 'a') === '');
        const carol = await ctx.openPage('chromium', await b.pageUrl('f1', 'carol', { role: 'viewer', publish: 'none' }), 'carol');
        check(cli(redis, 'HGET', 'sl:room:f1', 'home') === 'b' && cli(redis, 'HGET', 'sl:room:f1', 'epoch') === '2', 'f1 not on b at epoch 2');
        await sleep(1000);
        a.signal('SIGCONT');
        const resumed = Date.now();
        await waitFor('a did not fence itself', async () => (await metric(a, 'sluice_cluster_fenced_total')) === 1, { ms: 10_000 });
        const fencedMs = Date.now() - resumed;
        // Registered again, a re-claims what it hosts: f1 is b's (live, epoch 2), so a gives it
        // up (its clients reconnect) and keeps nothing (D83).
        await waitFor('a did not give f1 up', async () => (await metric(a, 'sluice_cluster_reassert_lost_total')) === 1, { ms: 10_000 });
        const gaveUpMs = Date.now() - resumed;
        check((await metric(a, 'sluice_cluster_home_rooms')) === 0, 'a still home of a room');
        const again = { frames: 10, ms: 30_000 };
        await Promise.all([decodes(alice, 'bob', again), decodes(bob, 'alice', again), decodes(carol, 'alice', again)]);
        const rejoins = await Promise.all([alice, bob].map((p) => p.evaluate(() => window.sluice.rejoins.filter((r) => r.ok).length)));
        check(rejoins.every((n) => n >= 1), `rejoins ${rejoins}`);
        clearInterval(poll);
        check([...homes].every((h) => ['a', 'b', ''].includes(h)) && cli(redis, 'HGET', 'sl:room:f1', 'home') === 'b', `homes seen ${[...homes]}`);
        const held = Object.fromEntries(await Promise.all([a, b, c].map(async (n) => [n.id, (await ownRooms(n)).filter((r) => r.name === 'f1' && r.num_participants > 0).length])));
        check(held.a === 0 && held.b === 1 && held.c === 0, `f1 held with participants by ${JSON.stringify(held)}`);
        ctx.details = { frozenMs: resumed - frozen, fencedAfterResumeMs: fencedMs, gaveUpAfterResumeMs: gaveUpMs, homesSeen: [...homes], rejoins, held };
        ctx.note = `cluster_frozen_node: 3 nodes; a frozen ${resumed - frozen} ms (lease 2000 ms), room re-placed on b (epoch 2), a fenced itself ${fencedMs} ms after SIGCONT and gave f1 up (re-claim refused: b holds it) ${gaveUpMs} ms after, alice (via b) and bob (via c) rejoined on b`;
      } finally {
        clearInterval(poll);
        a.signal('SIGCONT');
      }
    });
  },

  ...clusterFailoverScenarios,
};

// 6,000 joins take 45-90 s on 2 loaded cores.
clusterScenarios.cluster_race.timeoutS = 180;
