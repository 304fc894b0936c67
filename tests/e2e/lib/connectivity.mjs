// What the connectivity scenarios (issue 18) read: each PC's selected candidate pair from
// getStats, the time from opening a page to a selected pair, and what Sluice's participants API
// says about every session's path.

import { sleep } from './sluice.mjs';

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/**
 * The selected candidate pair of each of a page's PCs: `protocol` (of our local candidate: the
 * browser's side), `localType`, `relayProtocol` (a relay candidate's transport to the TURN
 * server: udp, tcp or tls) and a readable `local`/`remote`.
 */
export async function selectedPairs(page) {
  return page.evaluate(async () => {
    const s = await window.sluice.room.stats();
    const out = {};
    for (const pc of ['publisher', 'subscriber']) {
      const reports = s[pc] ?? [];
      const byId = new Map(reports.map((r) => [r.id, r]));
      const transport = reports.find((r) => r.type === 'transport');
      const pair = (transport && byId.get(transport.selectedCandidatePairId))
        ?? reports.find((r) => r.type === 'candidate-pair' && (r.selected || r.nominated) && r.state === 'succeeded');
      if (!pair) continue;
      const local = byId.get(pair.localCandidateId) ?? {};
      const remote = byId.get(pair.remoteCandidateId) ?? {};
      out[pc] = {
        protocol: local.protocol ?? remote.protocol ?? null,
        localType: local.candidateType ?? null,
        relayProtocol: local.relayProtocol ?? null,
        local: `${local.candidateType}/${local.protocol}${local.tcpType ? `/${local.tcpType}` : ''}${local.relayProtocol ? ` via ${local.relayProtocol}` : ''}`,
        remote: `${remote.candidateType}/${remote.protocol} ${remote.address ?? remote.ip}:${remote.port}`,
      };
    }
    return out;
  });
}

/** Opens an auto-joining page and waits until `pc` has a selected pair; returns it and the time. */
export async function joinTimed(ctx, engine, room, identity, params, pc) {
  const t0 = Date.now();
  const page = await ctx.page(engine, room, identity, params);
  let pairs = {};
  const end = Date.now() + 20_000;
  while (!pairs[pc]) {
    pairs = await selectedPairs(page);
    if (Date.now() > end) throw new Error(`${identity}: no selected ${pc} pair after 20 s; page log:\n${page.logs.slice(-10).join('\n')}`);
    if (!pairs[pc]) await sleep(100);
  }
  return { page, ms: Date.now() - t0, pair: pairs[pc] };
}

/** What the API says about the room's participants' transports (issue 18 "Done when"). */
export async function apiTransports(ctx, room) {
  const r = await ctx.server.api('GET', `/api/rooms/${room}/participants`);
  check(r.status === 200, `GET participants answered ${r.status}: ${JSON.stringify(r.body)}`);
  const list = Array.isArray(r.body) ? r.body : r.body.participants ?? [];
  return Object.fromEntries(list.map((p) => [p.identity, p.connectivity ?? null]));
}

/** Marks a scenario as one that runs in its own network namespace (run.mjs). */
export function netns(fn) {
  fn.netns = true;
  return fn;
}
