// When only TLS gets out: the SFU reached through a real coturn over TURN/TLS (issue 18, item 2).
// Each scenario runs in a network namespace of its own (run.mjs, `unshare -n`, only `lo`), where
// it starts coturn with a TLS listener only (self-signed certificate made at start, lib/coturn.mjs)
// relaying from 127.0.0.2, and Sluice with a `[turn]` section naming coturn's `turns:` URL and
// secret, so `joined.ice_servers` carries TURN REST credentials. The test browser trusts the
// certificate (Chromium: its SPKI hash in `--ignore-certificate-errors-spki-list`; Firefox: the
// throw-away CA that signed it, added to its profile's NSS database with `certutil`).
//
// 1. UDP baseline: a page with the default policy selects a direct UDP pair (its time is the
//    table's UDP figure, same browser, same run).
// 2. nftables then drops every UDP packet that is not to or from coturn's relay address and every
//    TCP segment to the SFU's ICE-TCP port: no direct path is left. Publisher and subscriber join
//    with `iceTransportPolicy: "relay"`: their selected pairs must be relay candidates over TLS,
//    video must decode continuously for 20 s, and the participants API and
//    `sluice_sessions_by_transport{transport="relayed"}` must report both sessions as relayed.
// 3. coturn is stopped with the scenario (Context.afterClose) and must have exited.

import { execFileSync } from 'node:child_process';

import { startCoturn } from './lib/coturn.mjs';
import { assertContinuity, fromSamples, samplePage } from './lib/continuity.mjs';
import { apiTransports, check, joinTimed, netns } from './lib/connectivity.mjs';
import { freeTcpPort } from './lib/sluice.mjs';

const RELAY_IP = '127.0.0.2';
const nft = (...args) => execFileSync('nft', args, { encoding: 'utf8' });

/**
 * Leaves the relay as the only way to the SFU: UDP only to or from coturn's relay address, no TCP
 * to the SFU's ICE-TCP port (the media port's number). Counters say what was dropped.
 */
function onlyRelay(mediaPort) {
  check(process.env.SLUICE_E2E_IN_NETNS === '1', 'refusing to add nftables rules outside a test namespace');
  const rule = (...r) => nft('add', 'rule', 'inet', 'sluice_e2e', 'out', ...r);
  nft('add', 'table', 'inet', 'sluice_e2e');
  nft('add', 'chain', 'inet', 'sluice_e2e', 'out', '{ type filter hook output priority 0; policy accept; }');
  rule('meta', 'l4proto', 'udp', 'ip', 'saddr', RELAY_IP, 'accept');
  rule('meta', 'l4proto', 'udp', 'ip', 'daddr', RELAY_IP, 'accept');
  rule('meta', 'l4proto', 'udp', 'counter', 'drop');
  rule('tcp', 'dport', String(mediaPort), 'counter', 'drop');
}

/** Packets dropped by the rules: {udp, tcp}. */
function dropped() {
  const counters = [...nft('list', 'chain', 'inet', 'sluice_e2e', 'out').matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
  return { udp: counters[0] ?? 0, tcp: counters[1] ?? 0 };
}

/** Starts coturn first, then tells Sluice about it (run.mjs calls this before ctx.start). */
async function withCoturn(ctx) {
  const coturn = await startCoturn({ relayIp: RELAY_IP, tlsPort: await freeTcpPort() });
  ctx.coturn = coturn;
  ctx.afterClose = async () => {
    const exit = await coturn.stop();
    // The scenario's own check that it left nothing behind; printed in the runner's line.
    ctx.details.coturnStopped = exit;
  };
  // Only the relay-only pages (?ice=relay) are told to use it; every page gets the credentials.
  ctx.browserOptions = {
    chromiumArgs: [`--ignore-certificate-errors-spki-list=${coturn.spki}`],
    trustPem: coturn.caPem,
  };
  return { turn: { urls: [coturn.url], secret: coturn.secret, relayIps: [RELAY_IP] } };
}

async function turnTls(ctx, engine) {
  try {
    await relayOnly(ctx, engine);
  } catch (e) {
    // What coturn saw (TLS handshakes, allocations, permissions) usually says why.
    e.message += `\n--- coturn log (last 20 lines)\n${ctx.coturn.logs.slice(-20).join('\n')}`;
    throw e;
  }
}

async function relayOnly(ctx, engine) {
  await ctx.browser(engine);
  // 1. UDP baseline, default policy.
  const base = await joinTimed(ctx, engine, 'base', 'base-pub', { role: 'host' }, 'publisher');
  check(base.pair.protocol === 'udp' && base.pair.localType !== 'relay', `baseline selected ${JSON.stringify(base.pair)}, expected direct UDP`);
  await base.page.close();
  // 2. No direct path left; relay-only pages.
  const mediaPort = Number(ctx.server.mediaAddr.split(':').pop());
  onlyRelay(mediaPort);
  const pub = await joinTimed(ctx, engine, 'r1', 'alice', { role: 'host', ice: 'relay' }, 'publisher');
  const sub = await joinTimed(ctx, engine, 'r1', 'bob', { role: 'viewer', publish: 'none', ice: 'relay' }, 'subscriber');
  for (const [who, p] of [['publisher', pub.pair], ['subscriber', sub.pair]]) {
    check(p.localType === 'relay' && p.relayProtocol === 'tls', `${who} selected ${JSON.stringify(p)}, expected a relay candidate over TLS`);
  }
  await ctx.waitDecoded(sub.page, { frames: 20, audio: engine === 'firefox' ? 0 : 30, ms: 20_000 });
  const video = assertContinuity(`${engine} over TURN/TLS`, fromSamples(await samplePage(sub.page, { seconds: 20 })), {
    // The fake cameras: Chromium 20 fps, Firefox 30 fps (testing-notes.md).
    senderFps: engine === 'firefox' ? 30 : 20,
    minWindowS: 19,
  });
  const api = await apiTransports(ctx, 'r1');
  for (const [who, pc] of [['alice', 'publisher'], ['bob', 'subscriber']]) {
    const c = api[who]?.[pc];
    check(c?.transport === 'udp' && c?.remote_type === 'relay' && c?.remote?.startsWith(`${RELAY_IP}:`),
      `participants API does not show ${who}'s ${pc} as relayed through ${RELAY_IP}: ${JSON.stringify(api)}`);
  }
  const metrics = await fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
  const relayed = Number(metrics.match(/^sluice_sessions_by_transport\{transport="relayed"\} (\d+)/m)?.[1] ?? 0);
  check(relayed >= 2, `sluice_sessions_by_transport{transport="relayed"} is ${relayed}, expected >= 2`);
  const allocations = ctx.coturn.logs.filter((l) => /ALLOCATE processed, success/.test(l)).length;
  check(allocations >= 2, `coturn logged ${allocations} successful allocations, expected >= 2`);
  ctx.interop.push({ engine: `${engine} ${pub.page.version}`, direction: 'TURN/TLS relay only (coturn): publishes and subscribes', codecs: video.label, tlsVersion: null, dtlsCipher: null, srtpCipher: null });
  ctx.details = {
    connectMs: { udp: base.ms, turnTlsPublisher: pub.ms, turnTlsSubscriber: sub.ms },
    pairs: { baseline: base.pair, publisher: pub.pair, subscriber: sub.pair },
    api,
    relayedSessions: relayed,
    coturnAllocations: allocations,
    directDropped: dropped(),
    video,
  };
}

export const turnScenarios = {
  turn_tls_chromium: netns(Object.assign((ctx) => turnTls(ctx, 'chromium'), { serverOptions: withCoturn })),
  turn_tls_firefox: netns(Object.assign((ctx) => turnTls(ctx, 'firefox'), { serverOptions: withCoturn })),
};
