// Multi-node failure scenarios (issue 15): a room's home killed with `kill -9`, ten times, and a
// node drained by its operator, each with three real `sluice up` nodes on a real `redis-server`
// and real Chromium pages (sluice.js `stayJoined` is what rejoins).

import { cli, decodes, detected, formed, nodeAt, ownRooms, quantile, rejoinedAndDecoding, senderFps, waitFor, withCluster } from './lib/cluster.mjs';
import { assertContinuity, fromSamples, samplePage } from './lib/continuity.mjs';
import { sleep } from './lib/sluice.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const LEASE_MS = 2000;
const RUNS = 10;
// Issue 15's targets: detection <= 3 s; media again <= 6 s at p95 over 10 runs.
const DETECT_P95_MS = 3000;
const MEDIA_P95_MS = 6000;
// The other room's longest freeze through the kill (see the run).
const OTHER_ROOM_FREEZE_MS = 1000;
// Drain: the media gap a moved participant sees. The client waits 125-250 ms before it joins
// again, then a redirect, new peer connections (ICE, DTLS) and a key frame on the new node; the
// drain itself moves one room every 100-300 ms. 3 s is that with margin for 2 loaded cores.
const DRAIN_GAP_MS = 3000;

/** Two publishing pages (host, controller) of `room` entering through `entry`; resolves once each decodes the other. */
async function pair(ctx, entry, room, [x, y]) {
  const px = await ctx.openPage('chromium', await entry.pageUrl(room, x), x);
  const py = await ctx.openPage('chromium', await entry.pageUrl(room, y, { role: 'controller' }), y);
  await Promise.all([decodes(px, y), decodes(py, x)]);
  return [px, py];
}

async function closePages(ctx, pages) {
  for (const p of pages) {
    await p.close().catch(() => {});
    ctx.pages.splice(ctx.pages.indexOf(p), 1);
  }
}

export const clusterFailoverScenarios = {
  /**
   * Failover, measured over 10 runs. Nodes a, b, c; each run a fresh room (created through a
   * or b in turn) with two pages that entered through another node. `kill -9` the room's home
   * (control and dataplane): detection (the entry node no longer lists it) and media again
   * (both pages rejoined through their entry and decode each other) are timed from the kill;
   * then the killed node starts again with the same id and a new boot. In the first run a second room on the surviving node (its pages entered there)
   * is sampled through the kill: no gap. p50/p95 printed; p95 asserted against issue 15's
   * targets.
   */
  async cluster_failover(ctx) {
    await withCluster(ctx, ['a', 'b', 'c'], async (nodes, redis, cluster) => {
      const runs = [];
      let other = null;
      let repeated = 0;
      for (let i = 0; i < RUNS; i++) {
        // A fresh room created through a or b in turn; placement (load, reservations) may put
        // it elsewhere: its home is the victim. The pages enter through another node (c unless
        // c is the home).
        const room = `f${i}-${repeated}`;
        const created = await nodes[i % 2 === 0 ? 'a' : 'b'].api('POST', '/api/rooms', { name: room });
        const victim = cli(redis, 'HGET', `sl:room:${room}`, 'home');
        check(created.status === 201 && victim, `${room}: ${JSON.stringify(created)}, home ${victim}`);
        const entry = ['c', 'a', 'b'].find((id) => id !== victim);
        const survivor = ['a', 'b', 'c'].find((id) => id !== victim && id !== entry);
        ctx.server = nodes[entry]; // its log and metrics if the run fails
        const pages = await pair(ctx, nodes[entry], room, [`alice${i}`, `bob${i}`]);
        let sampling = null;
        if (i === 0) {
          // The other room: homed on the survivor, its pages entered there.
          check((await nodes[survivor].api('POST', '/api/rooms', { name: `other-${room}` })).status === 201, 'create other');
          const [carol, dave] = await pair(ctx, nodes[survivor], `other-${room}`, ['carol', 'dave']);
          other = { carol, dave, fps: await senderFps(dave, 2) };
          sampling = samplePage(carol, { seconds: 20 });
          sampling.catch(() => {}); // awaited below; a failure before must not go unhandled
          await sleep(3000);
        }
        if (cli(redis, 'HGET', `sl:room:${room}`, 'home') !== victim) {
          // The home fenced itself before the kill (a lease renewal missed on an overloaded
          // machine: correct, but not the failover to measure): this run is made again.
          check(++repeated <= 3, `${room} moved off ${victim} before the kill ${repeated} times`);
          console.log(`cluster_failover run ${i + 1}: ${room} left ${victim} before the kill (fenced under load); run again`);
          await closePages(ctx, [...pages, ...(other ? [other.carol, other.dave] : [])]);
          other = null;
          await formed(nodes, 3);
          i -= 1;
          continue;
        }
        const killed = Date.now();
        nodes[victim].killNode();
        const detectedMs = await detected(nodes[entry], victim, killed);
        const [x, y] = await Promise.all([rejoinedAndDecoding(pages[0], `bob${i}`, killed), rejoinedAndDecoding(pages[1], `alice${i}`, killed)]);
        // Re-homed on a survivor (the entry, unless placement preferred the other one's load),
        // and both pages are there.
        const home = cli(redis, 'HGET', `sl:room:${room}`, 'home');
        const at = [x.url, y.url].map((u) => nodeAt(nodes, u));
        check(home !== victim && at.every((n) => n === home), `${room} re-homed on ${home}, rejoined at ${at}`);
        const run = { victim, entry, home, detectedMs, rejoinedMs: Math.max(x.rejoinedMs, y.rejoinedMs), mediaMs: Math.max(x.mediaMs, y.mediaMs), attempts: [x.attempts, y.attempts] };
        if (sampling) {
          const c = fromSamples(await sampling);
          // Four Chromium pages on 2 cores, two of them renegotiating after the kill: a stall
          // of ~0.5 s happens (506 ms seen, at no particular time); a gap from the failover
          // itself would last at least the lease (2 s). No second without frames either way.
          run.otherRoom = assertContinuity(`carol on ${survivor} (other room) through the kill of ${victim}`, c, { senderFps: other.fps, minWindowS: 19, maxFreezeMs: OTHER_ROOM_FREEZE_MS });
          const rejoins = await other.carol.evaluate(() => window.sluice.rejoins.length);
          check(rejoins === 0, `carol (other room) rejoined ${rejoins} times`);
          await closePages(ctx, [other.carol, other.dave]);
        }
        runs.push(run);
        console.log(`cluster_failover run ${i + 1}/${RUNS}: kill -9 ${victim}: detected ${detectedMs} ms, rejoined ${run.rejoinedMs} ms, media again ${run.mediaMs} ms`);
        await closePages(ctx, pages);
        await cluster.start(victim);
        await formed(nodes, 3);
      }
      const stats = (k) => ({ p50: quantile(runs.map((r) => r[k]), 0.5), p95: quantile(runs.map((r) => r[k]), 0.95), max: Math.max(...runs.map((r) => r[k])) });
      const summary = { leaseMs: LEASE_MS, runs: RUNS, repeated, detectedMs: stats('detectedMs'), rejoinedMs: stats('rejoinedMs'), mediaMs: stats('mediaMs') };
      ctx.details = { ...summary, otherRoom: runs[0].otherRoom, perRun: runs.map(({ otherRoom: _o, ...r }) => r) };
      ctx.note = `cluster_failover: ${RUNS} runs, lease ${LEASE_MS} ms, 3 nodes: detection p50 ${summary.detectedMs.p50} / p95 ${summary.detectedMs.p95} ms; rejoined p50 ${summary.rejoinedMs.p50} / p95 ${summary.rejoinedMs.p95} ms; media again p50 ${summary.mediaMs.p50} / p95 ${summary.mediaMs.p95} ms; other room longest freeze ${runs[0].otherRoom.longestFreezeMs} ms`;
      check(summary.detectedMs.p95 <= DETECT_P95_MS, `detection p95 ${summary.detectedMs.p95} ms > ${DETECT_P95_MS} ms`);
      check(summary.mediaMs.p95 <= MEDIA_P95_MS, `media again p95 ${summary.mediaMs.p95} ms > ${MEDIA_P95_MS} ms`);
    }, { leaseMs: LEASE_MS });
  },

  /**
   * Drain with media: room d1 homed on a, alice entered through a, bob through b. `POST
   * /api/drain` on a: a new room created through a goes elsewhere; alice and bob are told to
   * reconnect and land on another node (alice through a, which redirects); bob decodes alice
   * through it all with a gap <= DRAIN_GAP_MS; a exits 0 once its room is empty.
   */
  async cluster_drain(ctx) {
    await withCluster(ctx, ['a', 'b', 'c'], async ({ a, b, c }, redis) => {
      ctx.server = b;
      check((await a.api('POST', '/api/rooms', { name: 'd1' })).status === 201, 'create d1 on a');
      const alice = await ctx.openPage('chromium', await a.pageUrl('d1', 'alice'), 'alice');
      const bob = await ctx.openPage('chromium', await b.pageUrl('d1', 'bob', { role: 'controller' }), 'bob');
      await Promise.all([decodes(alice, 'bob'), decodes(bob, 'alice')]);
      const fps = await senderFps(alice, 2);
      const sampling = samplePage(bob, { seconds: 20, acrossRejoins: true });
      sampling.catch(() => {}); // awaited below; a failure before must not go unhandled
      await sleep(5000);
      const started = Date.now();
      const r = await a.api('POST', '/api/drain');
      check(r.status === 200, `drain: ${JSON.stringify(r)}`);
      // New rooms go elsewhere, even when asked of the draining node.
      const fresh = await a.api('POST', '/api/rooms', { name: 'after-drain' });
      const freshHome = cli(redis, 'HGET', 'sl:room:after-drain', 'home');
      check(fresh.status === 201 && ['b', 'c'].includes(freshHome), `room created through draining a: ${fresh.status}, home ${freshHome}`);
      const moved = await Promise.all([alice, bob].map((p) => waitFor(async () => `${p.identity} not moved: ${await p.evaluate(() => window.sluice.log.slice(-8).join('\n'))}`,
        () => p.evaluate((t) => window.sluice.rejoins.find((x) => x.ok && x.at >= t), started), { ms: 10_000 })));
      const exited = await waitFor('a did not exit', () => a.exited, { ms: 15_000 });
      const exitMs = Date.now() - started;
      check(exited.code === 0, `a exited ${JSON.stringify(exited)}`);
      const home = cli(redis, 'HGET', 'sl:room:d1', 'home');
      check(['b', 'c'].includes(home) && moved.every((m) => nodeAt({ a, b, c }, m.url) === home), `d1 home ${home}, moved to ${moved.map((m) => m.url)}`);
      const held = (await ownRooms(home === 'b' ? b : c)).find((x) => x.name === 'd1')?.num_participants;
      check(held === 2, `d1 on ${home} holds ${held} participants`);
      const cont = fromSamples(await sampling);
      const continuity = assertContinuity(`bob decodes alice through the drain of a (moved to ${home})`, cont, { senderFps: fps, minWindowS: 19, maxFreezeMs: DRAIN_GAP_MS, maxZeroSeconds: 3, minShare: 0.7 });
      ctx.details = { home, movedMs: moved.map((m) => m.at - started), exitMs, exit: exited, newRoomHome: freshHome, mediaGapMs: cont.longestFreezeMs, continuity };
      ctx.note = `cluster_drain: a drained; alice and bob moved to ${home} ${moved.map((m) => m.at - started).join(' / ')} ms after POST /api/drain; media gap at bob ${cont.longestFreezeMs} ms (bound ${DRAIN_GAP_MS}); a exited 0 after ${exitMs} ms; a room created through a went to ${freshHome}`;
    });
  },
};

clusterFailoverScenarios.cluster_failover.timeoutS = 300;
