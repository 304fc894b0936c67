// Remote-control input over the `_input` data channel (issue 17's input relay, D87) through a
// real `sluice up`: a Chromium host, a controller (Chromium, or Firefox in `input_firefox`) whose
// media path goes through sluice-netem at 10 % loss, and a Chromium viewer. The controller asks, the host grants; the controller
// sends numbered input events at 100/s the default way (the data channel, since it is open and
// control is held), then the same number forced over the WebSocket. Printed side by side: how
// many reached the host and the one-way latency p50/p99 (wall clock of the one machine) on each
// path. Then the host revokes: events the controller forces onto `_input` are dropped by the SFU
// (none reach the host; `sluice_data_messages_dropped_total{kind="input",reason="not_permitted"}`
// moves), and the viewer never gets any input. `input_host_without_data`: a host page without data
// channels gets no route, so the controller's input keeps to the WebSocket, all of it arriving.

import { sleep, startNetem } from './lib/sluice.mjs';

/** Events per batch, and the pace (100/s, a busy pointer stream). */
const COUNT = 500;
const PACE_MS = 10;
/** Share of the data-channel batch that must reach the host through 10 % loss on one hop. */
const MIN_DC_SHARE = 0.8;

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const PAGE = { publish: 'none', p2p: 0, data: 1 };

/** Starts recording every `input` event on a page (`window.inputs`). */
function record(page) {
  return page.evaluate(() => {
    window.inputs = [];
    window.sluice.room.on('input', ({ from, event, via }) => {
      window.inputs.push({ from, via, n: event?.n, batch: event?.batch, latency: Date.now() - (event?.t ?? 0) });
    });
  });
}

/** Polls `fn` on `page` until it is truthy or `ms` pass; its last value. */
async function until(page, fn, ms, arg) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v || Date.now() > end) return v;
    await sleep(100);
  }
}

/** Sends one batch of numbered events from the controller; the paths `sendInput` reported. */
function sendBatch(page, batch, count, via) {
  return page.evaluate(async ({ batch, count, via, pace }) => {
    const paths = {};
    const start = performance.now();
    for (let n = 0; n < count; n++) {
      const path = window.sluice.room.sendInput({ batch, n, t: Date.now(), kind: 'pointermove', x: n % 1920, y: n % 1080 }, { via });
      paths[path] = (paths[path] ?? 0) + 1;
      // Paced against the start so timer slack does not slow the batch down.
      const wait = start + (n + 1) * pace - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return paths;
  }, { batch, count, via, pace: PACE_MS });
}

function pct(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** One batch as the host saw it. */
function summarize(inputs, batch) {
  const got = inputs.filter((i) => i.batch === batch);
  const unique = new Set(got.map((i) => i.n)).size;
  const via = {};
  for (const i of got) via[i.via] = (via[i.via] ?? 0) + 1;
  const lat = got.map((i) => i.latency);
  return { received: unique, share: Number((unique / COUNT).toFixed(3)), via, p50: pct(lat, 50), p99: pct(lat, 99), from: [...new Set(got.map((i) => i.from))] };
}

/** `sluice_data_messages_dropped_total{kind="input",reason="not_permitted"}` summed. */
async function inputRefused(ctx) {
  const text = await fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
  return text
    .split('\n')
    .filter((l) => l.startsWith('sluice_data_messages_dropped_total{') && l.includes('kind="input"') && l.includes('reason="not_permitted"'))
    .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
}

/** The scenario with the controller in `engine` (host and viewer: Chromium). */
async function inputOverDataChannel(ctx, engine, room) {
  const relay = await startNetem(ctx.server.mediaAddr, ['--loss', '0.1']);
  try {
    const host = await ctx.page('chromium', room, 'hal', { role: 'host', ...PAGE });
    const ctl = await ctx.page(engine, room, 'cid', { role: 'controller', ...PAGE, relay: relay.addr });
    const viewer = await ctx.page('chromium', room, 'vic', { role: 'viewer', ...PAGE });
    for (const p of [host, ctl, viewer]) {
      const open = await until(p, () => window.sluice.room.dataChannels?.input?.readyState === 'open', 15_000);
      check(open, `${p.identity}: _input did not open`);
      await record(p);
    }
    await ctl.evaluate(() => {
      window.control = [];
      for (const ev of ['control_granted', 'control_revoked']) window.sluice.room.on(ev, (e) => e.self && window.control.push(ev));
    });
    await host.evaluate(() => {
      window.requests = [];
      window.sluice.room.on('control_requested', (e) => window.requests.push(e.identity));
    });
    await ctl.evaluate(() => window.sluice.room.requestControl());
    check(await until(host, () => window.requests.includes('cid'), 5_000), 'the host never saw the request');
    await host.evaluate(() => window.sluice.room.grantControl('cid'));
    check(await until(ctl, () => window.control.includes('control_granted'), 5_000), 'the controller was never granted control');

    const dcPaths = await sendBatch(ctl, 'dc', COUNT, undefined);
    const wsPaths = await sendBatch(ctl, 'ws', COUNT, 'websocket');
    await sleep(1_000);
    const atHost = await host.evaluate(() => window.inputs);
    const dc = summarize(atHost, 'dc');
    const ws = summarize(atHost, 'ws');
    console.log(`input ${engine} → chromium over the data channel (controller's path 10 % loss): ${dc.received}/${COUNT} reached the host (${(dc.share * 100).toFixed(1)} %, via ${JSON.stringify(dc.via)}), latency p50 ${dc.p50} ms p99 ${dc.p99} ms; sent ${JSON.stringify(dcPaths)}`);
    console.log(`input ${engine} → chromium over the WebSocket:                                ${ws.received}/${COUNT} reached the host (${(ws.share * 100).toFixed(1)} %, via ${JSON.stringify(ws.via)}), latency p50 ${ws.p50} ms p99 ${ws.p99} ms; sent ${JSON.stringify(wsPaths)}`);
    ctx.details = { dc, ws, dcPaths, wsPaths };
    check(dcPaths.data_channel === COUNT, `the controller used the data channel for ${dcPaths.data_channel ?? 0} of ${COUNT}`);
    check(dc.via.data_channel === dc.received && dc.from.join() === 'cid', `data-channel batch: ${JSON.stringify(dc)}`);
    check(dc.share >= MIN_DC_SHARE, `only ${dc.received} of ${COUNT} input events over the data channel (want >= ${MIN_DC_SHARE * 100} %)`);
    check(ws.received === COUNT && ws.via.websocket === COUNT, `WebSocket batch: ${JSON.stringify(ws)}`);

    // Revoked: what the controller forces onto `_input` goes nowhere and is counted.
    const before = await inputRefused(ctx);
    await host.evaluate(() => window.sluice.room.revokeControl('cid'));
    check(await until(ctl, () => window.control.includes('control_revoked'), 5_000), 'the controller never saw the revoke');
    const autoPath = await ctl.evaluate(() => window.sluice.room.sendInput({ batch: 'auto-after', n: 0, t: Date.now() }));
    const forced = await sendBatch(ctl, 'after', 50, 'data_channel');
    let refused = 0;
    for (const end = Date.now() + 5_000; Date.now() < end; await sleep(250)) {
      refused = (await inputRefused(ctx)) - before;
      if (refused >= 40) break;
    }
    await sleep(500);
    const late = (await host.evaluate(() => window.inputs)).filter((i) => i.batch === 'after' || i.batch === 'auto-after').length;
    const atViewer = (await viewer.evaluate(() => window.inputs)).length;
    const atCtl = (await ctl.evaluate(() => window.inputs)).length;
    console.log(`after revoke: default path ${autoPath}; 50 forced onto _input (${JSON.stringify(forced)}): host got ${late}, ${refused} counted not_permitted; viewer got ${atViewer} input events, the controller ${atCtl}`);
    ctx.details.afterRevoke = { autoPath, late, refused, viewer: atViewer };
    check(autoPath === 'websocket', `after the revoke sendInput chose ${autoPath}`);
    check(late === 0, `${late} input events reached the host after the revoke`);
    check(refused >= 40, `only ${refused} of 50 revoked input events counted not_permitted (10 % loss on the way)`);
    check(atViewer === 0 && atCtl === 0, `input reached the viewer (${atViewer}) or the controller (${atCtl})`);
  } finally {
    ctx.details = { ...ctx.details, relay: (await relay.stop()).trim().split('\n').pop() };
  }
}

/**
 * A host without data channels: the server gives the controller no route (`input_route` never
 * says `data_channel: true`), so its input keeps to the WebSocket and all of it arrives.
 */
async function inputHostWithoutData(ctx) {
  const host = await ctx.page('chromium', 'in3', 'hal', { role: 'host', publish: 'none', p2p: 0 });
  const ctl = await ctx.page('chromium', 'in3', 'cid', { role: 'controller', ...PAGE });
  check(await until(ctl, () => window.sluice.room.dataChannels?.input?.readyState === 'open', 15_000), 'cid: _input did not open');
  await record(host);
  await ctl.evaluate(() => {
    window.control = [];
    window.sluice.room.on('control_granted', (e) => e.self && window.control.push('control_granted'));
    window.sluice.room.on('input_route', (e) => window.control.push(`route ${e.dataChannel}`));
  });
  await ctl.evaluate(() => window.sluice.room.requestControl());
  await sleep(300);
  await host.evaluate(() => window.sluice.room.grantControl('cid'));
  check(await until(ctl, () => window.control.includes('control_granted'), 5_000), 'the controller was never granted control');
  const paths = await sendBatch(ctl, 'nodata', 50, undefined);
  await sleep(500);
  const got = summarize(await host.evaluate(() => window.inputs), 'nodata');
  const seen = await ctl.evaluate(() => window.control);
  console.log(`input to a host without data channels: sent ${JSON.stringify(paths)}, host got ${got.received}/50 via ${JSON.stringify(got.via)}; controller saw ${JSON.stringify(seen)}`);
  ctx.details = { paths, got, seen };
  check(paths.websocket === 50, `the controller sent ${JSON.stringify(paths)}`);
  check(got.received === 50 && got.via.websocket === 50, `host got ${JSON.stringify(got)}`);
  check(!seen.includes('route true'), `a route to a host without data channels: ${seen}`);
}

export const inputScenarios = {
  /** Chromium controller → Chromium host. */
  input_data_channel: (ctx) => inputOverDataChannel(ctx, 'chromium', 'in1'),
  /** Firefox controller → Chromium host. */
  input_firefox: (ctx) => inputOverDataChannel(ctx, 'firefox', 'in2'),
  input_host_without_data: inputHostWithoutData,
};
