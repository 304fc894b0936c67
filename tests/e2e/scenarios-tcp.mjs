// Connectivity when UDP is blocked (issue 18). These scenarios run inside a network namespace of
// their own (run.mjs starts them under `unshare -n` with only `lo` up, `netns: true`), so the
// nftables rule that drops every UDP packet is the namespace's and nobody else's: Sluice, the
// browser and this script all live in it. Each first measures a UDP baseline, then blocks UDP,
// then publishes and subscribes again: the browser must reach the SFU over ICE-TCP (the passive
// TCP candidate on the media port), decode continuously for 20 s, and the nftables counter must
// show that UDP was tried and dropped.

import { execFileSync } from 'node:child_process';

import { assertContinuity, fromSamples, samplePage } from './lib/continuity.mjs';
import { apiTransports, check, joinTimed, netns } from './lib/connectivity.mjs';
import { outboundTotals } from './lib/stats.mjs';

const nft = (...args) => execFileSync('nft', args, { encoding: 'utf8' });

/** Drops every UDP packet in this namespace (in and out); the counter says how many. */
function blockUdp() {
  check(process.env.SLUICE_E2E_IN_NETNS === '1', 'refusing to add nftables rules outside a test namespace');
  nft('add', 'table', 'inet', 'sluice_e2e');
  nft('add', 'chain', 'inet', 'sluice_e2e', 'out', '{ type filter hook output priority 0; policy accept; }');
  nft('add', 'rule', 'inet', 'sluice_e2e', 'out', 'meta', 'l4proto', 'udp', 'counter', 'drop');
}

function udpDropped() {
  const m = nft('list', 'chain', 'inet', 'sluice_e2e', 'out').match(/counter packets (\d+)/);
  return m ? Number(m[1]) : 0;
}

/** The publisher's DTLS state, what it sent and its page log, for a subscriber's timeout. */
async function publisherState(ctx, page) {
  const sum = await ctx.stats(page);
  const log = await page.evaluate(() => window.sluice.log.slice(-12).join('\n'));
  return `publisher transport ${JSON.stringify(sum.transport)} outbound video ${
    JSON.stringify(outboundTotals(sum, 'video'))} audio ${JSON.stringify(outboundTotals(sum, 'audio'))}\npublisher page log:\n${log}`;
}

async function iceTcp(ctx, engine) {
  // The browser starts outside the timings (both measure page load to a selected pair).
  await ctx.browser(engine);
  // 1. UDP baseline.
  const base = await joinTimed(ctx, engine, 'base', 'base-pub', { role: 'host' }, 'publisher');
  check(base.pair.protocol === 'udp', `baseline selected ${JSON.stringify(base.pair)}, expected UDP`);
  await base.page.close();
  // 2. UDP blocked: publish and subscribe over ICE-TCP.
  blockUdp();
  const pub = await joinTimed(ctx, engine, 'r1', 'alice', { role: 'host' }, 'publisher');
  const sub = await joinTimed(ctx, engine, 'r1', 'bob', { role: 'viewer', publish: 'none' }, 'subscriber');
  check(pub.pair.protocol === 'tcp', `publisher selected ${JSON.stringify(pub.pair)}, expected TCP`);
  check(sub.pair.protocol === 'tcp', `subscriber selected ${JSON.stringify(sub.pair)}, expected TCP`);
  try {
    await ctx.waitDecoded(sub.page, { frames: 20, audio: engine === 'firefox' ? 0 : 30, ms: 20_000 });
  } catch (e) {
    // What the publisher did: a stalled handshake, or a sender that never started (Firefox over
    // TCP once sent no RTP with its pair selected).
    e.message += `\n${await publisherState(ctx, pub.page)}`;
    throw e;
  }
  const video = assertContinuity(`${engine} over ICE-TCP`, fromSamples(await samplePage(sub.page, { seconds: 20 })), {
    // The fake cameras: Chromium 20 fps, Firefox 30 fps (testing-notes.md).
    senderFps: engine === 'firefox' ? 30 : 20,
    minWindowS: 19,
  });
  const dropped = udpDropped();
  check(dropped > 0, 'the nftables rule dropped no UDP packet: the browser never tried UDP');
  const api = await apiTransports(ctx, 'r1');
  check(api.alice?.publisher?.transport === 'tcp' && api.bob?.subscriber?.transport === 'tcp',
    `participants API does not show the TCP pairs: ${JSON.stringify(api)}`);
  const metrics = await fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
  const tcpLines = metrics.split('\n').filter((l) => /tcp/.test(l) && !l.startsWith('#') && !/ 0$/.test(l));
  check(/sluice_sessions_by_transport\{transport="tcp"\} [1-9]/.test(metrics), 'metrics count no TCP session');
  ctx.interop.push({ engine: `${engine} ${pub.page.version}`, direction: 'ICE-TCP (UDP dropped): publishes and subscribes', codecs: video.label, tlsVersion: null, dtlsCipher: null, srtpCipher: null });
  ctx.details = {
    connectMs: { udp: base.ms, tcpPublisher: pub.ms, tcpSubscriber: sub.ms },
    pairs: { baseline: base.pair, publisher: pub.pair, subscriber: sub.pair },
    udpDropped: dropped,
    api,
    video,
    metrics: tcpLines.slice(0, 12),
  };
}

export const tcpScenarios = {
  ice_tcp_chromium: netns((ctx) => iceTcp(ctx, 'chromium')),
  ice_tcp_firefox: netns((ctx) => iceTcp(ctx, 'firefox')),
};
