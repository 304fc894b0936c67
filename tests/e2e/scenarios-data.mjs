// Data channels through a real `sluice up` (issue 17): numbered messages both ways on `_reliable`
// and `_lossy` between Chromium and Firefox, Chromium and aiortc (its own SCTP), and Chromium and
// Firefox under 10 % loss from sluice-netem. Reliable must arrive complete and in order; the lossy
// share and the one-way latencies (p50/p99, wall clock of the one machine) are printed. Also: a
// viewer's messages are refused (counted on /metrics), destinations reach only those named.

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

import { sleep, startNetem } from './lib/sluice.mjs';

const E2E = resolve(new URL('.', import.meta.url).pathname);
const PYTHON = process.env.SLUICE_E2E_PYTHON ?? resolve(E2E, '.venv/bin/python');
/** Messages each way on each channel. */
const COUNT = 1000;
/** Share of lossy messages that must arrive: all on a clean path; most through 10 % loss. */
const LOSSY_CLEAN = 0.95;
const LOSSY_LOSSY = 0.6;

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const DATA_PAGE = { publish: 'none', p2p: 0, data: 1 };

/** Starts collecting `{n, t}` messages from `peer` on a page (`window.dc`). */
function collect(page, peer) {
  return page.evaluate((peer) => {
    const dc = { reliable: [], lossy: [], latency: { reliable: [], lossy: [] }, senders: {} };
    window.dc = dc;
    window.sluice.room.on('data', ({ from, data, reliable }) => {
      dc.senders[from] = (dc.senders[from] ?? 0) + 1;
      if (from !== peer || typeof data !== 'string' || data[0] !== '{') return;
      const m = JSON.parse(data);
      const kind = reliable ? 'reliable' : 'lossy';
      dc[kind].push(m.n);
      dc.latency[kind].push(Date.now() - m.t);
    });
  }, peer);
}

/** Sends `count` numbered messages on each channel from a page, paced under the rate limit. */
function sendNumbered(page, count) {
  return page.evaluate(async (count) => {
    const room = window.sluice.room;
    for (let i = 0; i < count; i++) {
      for (const reliable of [true, false]) room.send(JSON.stringify({ n: i, t: Date.now() }), { reliable });
      // 4 pairs per 10 ms: at most 800 messages a second (the server allows 1,000).
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 10));
    }
  }, count);
}

/** Waits until a page has `count` reliable messages (or `ms` pass); returns `window.dc`. */
async function received(page, count, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const dc = await page.evaluate(() => window.dc);
    if (dc.reliable.length >= count || Date.now() > end) {
      await sleep(300);
      return page.evaluate(() => window.dc);
    }
    await sleep(200);
  }
}

function pct(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 10) / 10;
}

/** Checks one direction's reception and returns its printed summary. */
function judge(label, dc, count, lossyMin) {
  const inOrder = dc.reliable.every((n, i) => n === i);
  const lossyUnique = new Set(dc.lossy).size;
  const s = {
    label,
    reliable: dc.reliable.length,
    inOrder,
    lossy: lossyUnique,
    lossyShare: Number((lossyUnique / count).toFixed(3)),
    reliableP50: pct(dc.latency.reliable, 50),
    reliableP99: pct(dc.latency.reliable, 99),
    lossyP50: pct(dc.latency.lossy, 50),
    lossyP99: pct(dc.latency.lossy, 99),
  };
  console.log(`data ${label}: reliable ${s.reliable}/${count} in order ${inOrder}, latency p50 ${s.reliableP50} ms p99 ${s.reliableP99} ms; lossy ${lossyUnique}/${count} (${(s.lossyShare * 100).toFixed(1)} %), latency p50 ${s.lossyP50} ms p99 ${s.lossyP99} ms`);
  check(dc.reliable.length === count, `${label}: ${dc.reliable.length} of ${count} reliable messages arrived`);
  check(inOrder, `${label}: reliable messages out of order: ${dc.reliable.slice(0, 20).join(',')}…`);
  check(lossyUnique >= count * lossyMin, `${label}: only ${lossyUnique} of ${count} lossy messages arrived (want >= ${lossyMin * 100} %)`);
  return s;
}

/** Sum of `sluice_data_messages_dropped_total` for `kind` and `reason` on /metrics. */
async function dataDrops(ctx, kind, reason) {
  const text = await fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
  return text
    .split('\n')
    .filter((l) => l.startsWith('sluice_data_messages_dropped_total{') && l.includes(`kind="${kind}"`) && l.includes(`reason="${reason}"`))
    .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
}

/** Two pages exchange COUNT numbered messages each way on both channels. */
export async function exchange(ctx, a, b, lossyMin) {
  await collect(a, b.identity);
  await collect(b, a.identity);
  await Promise.all([sendNumbered(a, COUNT), sendNumbered(b, COUNT)]);
  const [atA, atB] = await Promise.all([received(a, COUNT, 20_000), received(b, COUNT, 20_000)]);
  return [
    judge(`${a.engine} → ${b.engine}`, atB, COUNT, lossyMin),
    judge(`${b.engine} → ${a.engine}`, atA, COUNT, lossyMin),
  ];
}

/** Runs tests/e2e/aiortc_data.py; resolves `{open, result}` helpers. */
function aiortcData(ctx, args) {
  const child = spawn(PYTHON, [resolve(E2E, 'aiortc_data.py'), ...args], { cwd: E2E, stdio: ['pipe', 'pipe', 'pipe'] });
  ctx.children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  const lines = [];
  let wake = null;
  child.stdout.on('data', (c) => {
    out += c;
    const parts = out.split('\n');
    out = parts.pop();
    lines.push(...parts.filter(Boolean));
    wake?.();
  });
  const exited = new Promise((ok) => child.on('exit', (code) => ok(code)));
  const next = async (ms) => {
    const end = Date.now() + ms;
    while (!lines.length) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`aiortc data: no output (exit ${child.exitCode}):\n${err.slice(-1500)}`);
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
    const line = JSON.parse(lines.shift());
    if (line.error) throw new Error(`aiortc data: ${line.error}\n${err.slice(-1500)}`);
    return line;
  };
  return {
    next,
    go: () => child.stdin.write('go\n'),
    exited,
  };
}

export const dataScenarios = {
  /**
   * Chromium ↔ Firefox: 1,000 numbered messages each way on both channels (reliable complete and
   * in order, lossy >= 95 % on a clean path); then a viewer (no can_publish_data by default) is
   * refused and counted, and a message to a named destination reaches only that participant.
   */
  async data_chromium_firefox(ctx) {
    const alice = await ctx.page('chromium', 'd1', 'alice', { role: 'host', ...DATA_PAGE });
    const bob = await ctx.page('firefox', 'd1', 'bob', { role: 'controller', ...DATA_PAGE });
    const [ab, ba] = await exchange(ctx, alice, bob, LOSSY_CLEAN);
    ctx.details = { ab, ba };

    const carol = await ctx.page('chromium', 'd1', 'carol', { role: 'viewer', ...DATA_PAGE });
    await collect(carol, 'alice');
    await collect(bob, 'alice');
    await collect(alice, 'carol');
    const before = await dataDrops(ctx, 'reliable', 'not_permitted');
    await carol.evaluate(() => {
      for (let i = 0; i < 10; i++) window.sluice.room.send(JSON.stringify({ n: i, t: Date.now() }));
    });
    await alice.evaluate(() => {
      for (let i = 0; i < 20; i++) window.sluice.room.send(JSON.stringify({ n: i, t: Date.now() }), { destinations: ['bob'] });
    });
    const atBob = await received(bob, 20, 5_000);
    let refused = 0;
    for (const end = Date.now() + 5_000; Date.now() < end; await sleep(250)) {
      refused = (await dataDrops(ctx, 'reliable', 'not_permitted')) - before;
      if (refused >= 10) break;
    }
    const atCarol = await carol.evaluate(() => window.dc);
    const atAlice = await alice.evaluate(() => window.dc);
    console.log(`data destinations: bob got ${atBob.reliable.length}/20 addressed to him, carol (viewer) got ${atCarol.reliable.length}; carol's 10 refused: ${refused} counted not_permitted, alice got ${atAlice.reliable.length} from carol`);
    ctx.details.destinations = { bob: atBob.reliable.length, carol: atCarol.reliable.length, refused, fromCarol: atAlice.reliable.length };
    check(atBob.reliable.length === 20, `bob got ${atBob.reliable.length} of 20 messages addressed to him`);
    check(atCarol.reliable.length === 0, `carol got ${atCarol.reliable.length} messages addressed to bob`);
    check(atAlice.reliable.length === 0, `a viewer's messages reached alice (${atAlice.reliable.length})`);
    check(refused >= 10, `a viewer's 10 messages: ${refused} counted not_permitted`);

    // The admin API's server message: every page gets it from `$server`; a bad body names the field.
    const sent = await ctx.server.api('POST', '/api/rooms/d1/data', { text: 'hello from the server' });
    const bad = await ctx.server.api('POST', '/api/rooms/d1/data', { text: 'x', destinations: ['<b>'] });
    const fromServer = async (page) => {
      for (const end = Date.now() + 5_000; Date.now() < end; await sleep(100)) {
        const n = await page.evaluate(() => window.dc.senders.$server ?? 0);
        if (n) return n;
      }
      return 0;
    };
    const server = { alice: await fromServer(alice), bob: await fromServer(bob), carol: await fromServer(carol) };
    console.log(`data server message: POST -> ${sent.status}, received by ${JSON.stringify(server)}; bad destination -> ${bad.status} ${JSON.stringify(bad.body)}`);
    ctx.details.serverMessage = { status: sent.status, server, bad: bad.status };
    check(sent.status === 200, `POST /api/rooms/d1/data: ${sent.status} ${JSON.stringify(sent.body)}`);
    check(server.alice === 1 && server.bob === 1 && server.carol === 1, `server message received ${JSON.stringify(server)}`);
    check(bad.status === 400 && bad.body?.error?.field === 'destinations[0]', `bad destination: ${bad.status} ${JSON.stringify(bad.body)}`);
  },

  /** Chromium ↔ aiortc (a data-only WHIP session): 1,000 numbered messages each way. */
  async data_chromium_aiortc(ctx) {
    const alice = await ctx.page('chromium', 'd2', 'alice', { role: 'host', ...DATA_PAGE });
    const token = await ctx.server.token('d2', 'bot', 'controller');
    const bot = aiortcData(ctx, ['--url', `${ctx.server.origin}/whip/d2`, '--token', token, '--count', String(COUNT), '--peer', 'alice']);
    await bot.next(30_000);
    await collect(alice, 'bot');
    bot.go();
    await sendNumbered(alice, COUNT);
    const [atAlice, atBot] = await Promise.all([received(alice, COUNT, 25_000), bot.next(45_000)]);
    const toBot = { ...atBot.received, latency: atBot.latency_ms };
    const ab = judge(`chromium → aiortc ${atBot.version}`, toBot, COUNT, LOSSY_CLEAN);
    const ba = judge(`aiortc ${atBot.version} → chromium`, atAlice, COUNT, LOSSY_CLEAN);
    check(atBot.senders.includes('alice'), `aiortc saw senders ${atBot.senders}, not alice`);
    ctx.details = { ab, ba, aiortcSenders: atBot.senders };
  },

  /**
   * Chromium ↔ Firefox with Firefox's path through sluice-netem at 10 % loss both ways:
   * reliable complete and in order (SCTP retransmits), lossy delivers most, latencies printed.
   */
  async data_loss(ctx) {
    const relay = await startNetem(ctx.server.mediaAddr, ['--loss', '0.1']);
    try {
      const alice = await ctx.page('chromium', 'd3', 'alice', { role: 'host', ...DATA_PAGE });
      const bob = await ctx.page('firefox', 'd3', 'bob', { role: 'controller', ...DATA_PAGE, relay: relay.addr });
      const [ab, ba] = await exchange(ctx, alice, bob, LOSSY_LOSSY);
      ctx.details = { ab, ba };
    } finally {
      ctx.details.relay = (await relay.stop()).trim().split('\n').pop();
    }
  },
};
