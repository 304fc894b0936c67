// Runs the e2e scenarios one after another (2 cores: never two browsers' worth of pages at once),
// each bounded by SLUICE_E2E_SCENARIO_TIMEOUT seconds, prints a summary table, writes
// out/results.json (every scenario's details and the interop rows), exits 1 on any failure.
//   node run.mjs                     all scenarios
//   node run.mjs simulcast fanout    only these
//   node run.mjs table               the four publisher → player combinations of issue 12
//                                    (then `node continuity-table.mjs` prints their table)

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { Context } from './lib/context.mjs';
import { scenarios } from './scenarios.mjs';

const LIMIT_MS = Number(process.env.SLUICE_E2E_SCENARIO_TIMEOUT ?? 90) * 1000;
// SLUICE_E2E_SKIP="a,b" leaves scenarios out of a full run (the summary lists them as skipped).
const skipped = (process.env.SLUICE_E2E_SKIP ?? '').split(',').map((s) => s.trim()).filter(Boolean);
// Named groups of scenarios.
const GROUPS = { table: ['whip_whep', 'aiortc_to_chromium', 'chromium_to_aiortc', 'chromium_to_chromium'] };
const names = (process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(scenarios))
  .flatMap((n) => GROUPS[n] ?? [n])
  .filter((n) => !skipped.includes(n));
for (const n of [...names, ...skipped]) {
  if (!scenarios[n]) {
    console.error(`unknown scenario ${n}; known: ${Object.keys(scenarios).join(' ')}`);
    process.exit(2);
  }
}

/**
 * A scenario marked `netns` runs in a network namespace of its own (`unshare -n`, only `lo` up),
 * so the firewall rules it adds touch nothing else: this runner starts a second one in there for
 * it and takes its result.
 */
function inNamespace(name) {
  const out = mkdtempSync(join(tmpdir(), 'sluice-e2e-ns-'));
  const self = new URL(import.meta.url).pathname;
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$1" "$2"', process.execPath, self, name], {
    stdio: 'inherit',
    env: { ...process.env, SLUICE_E2E_IN_NETNS: '1', SLUICE_E2E_OUT: out },
    timeout: LIMIT_MS + 30_000,
  });
  try {
    return JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).results[0];
  } catch {
    return { name, status: 'FAIL', seconds: 0, details: {}, interop: [], error: `namespace run failed (exit ${r.status}, ${r.error?.message ?? 'no error'})` };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const results = [];
const started = Date.now();
for (const name of names) {
  if (scenarios[name].netns && process.env.SLUICE_E2E_IN_NETNS !== '1') {
    results.push(inNamespace(name));
    continue;
  }
  // A scenario whose point is a time target on a shared 2-core machine may allow one more run
  // (`fn.retries`, e.g. downlink_cap's 2 s to the low layer): every failed run is printed, and the
  // result says how many runs it took, so a flaky pass is visible and a real regression fails
  // every run.
  const retries = scenarios[name].retries ?? 0;
  for (let attempt = 1; ; attempt++) {
    const r = await runOnce(name);
    const last = r.status === 'pass' || attempt > retries;
    if (last) results.push({ ...r, attempts: attempt });
    const tag = r.status === 'pass' ? 'ok  ' : last ? 'FAIL' : 'FAIL (will run again)';
    console.log(`${tag} ${name} (${r.seconds.toFixed(1)} s${attempt > 1 ? `, run ${attempt}` : ''}) ${JSON.stringify(r.details)}`);
    if (r.error) console.log(r.error.split('\n').map((l) => `     ${l}`).join('\n'));
    if (last) break;
  }
}

/** One run of scenario `name` in a fresh Context: its result row. */
async function runOnce(name) {
  // A scenario may need longer than the default (`fn.timeoutS`, e.g. the 10-run failover).
  const limit = Math.max(LIMIT_MS, (scenarios[name].timeoutS ?? 0) * 1000);
  const ctx = new Context(name);
  const t0 = Date.now();
  let status = 'pass';
  let error = null;
  let timer;
  try {
    await Promise.race([
      // A scenario may carry `serverOptions(ctx)` (async): what its Sluice needs (a `[turn]`
      // section for a coturn it started first, …).
      Promise.resolve(scenarios[name].serverOptions?.(ctx))
        .then((options) => ctx.start(options))
        .then(() => scenarios[name](ctx)),
      new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`scenario timed out after ${limit / 1000} s`)), limit))),
    ]);
  } catch (e) {
    status = 'FAIL';
    error = e.message;
    if (ctx.server) {
      // The dataplane's drop counters usually say why media did not arrive.
      const metrics = await fetch(`${ctx.server.origin}/metrics`)
        .then((r) => r.text())
        .then((t) => t.split('\n').filter((l) => /^sluice_(dataplane|worker)/.test(l) && !/ 0$/.test(l)).join('\n'))
        .catch((m) => `metrics unavailable: ${m}`);
      error += `\n--- sluice /metrics (non-zero dataplane lines)\n${metrics}`;
      error += `\n--- sluice log (last 25 lines)\n${ctx.server.logs.slice(-25).join('\n')}`;
    }
  } finally {
    clearTimeout(timer);
    await ctx.close().catch(() => {});
  }
  const seconds = (Date.now() - t0) / 1000;
  return { name, status, seconds, details: ctx.details, interop: ctx.interop, note: ctx.note ?? null, error };
}

const out = process.env.SLUICE_E2E_OUT ?? resolve(new URL('.', import.meta.url).pathname, 'out');
mkdirSync(out, { recursive: true });
writeFileSync(resolve(out, 'results.json'), JSON.stringify({ when: new Date().toISOString(), results }, null, 2));

console.log('\nscenario                 result   seconds');
console.log('------------------------ ------ --------');
for (const r of results) console.log(`${r.name.padEnd(24)} ${r.status.padEnd(6)} ${r.seconds.toFixed(1).padStart(8)}${r.attempts > 1 ? `  (run ${r.attempts}: the earlier run failed, printed above)` : ''}`);
for (const n of skipped) console.log(`${n.padEnd(24)} ${'skip'.padEnd(6)} ${'-'.padStart(8)}`);
// Issue 18's closing note: time from opening a page to a selected pair, per path, from the
// connectivity scenarios that ran (each measures its UDP baseline in the same run).
const times = results.filter((r) => r.details?.connectMs?.udp !== undefined);
if (times.length) {
  console.log('\nconnection times (page opened -> selected pair, ms; same browser, same run)');
  console.log('scenario                 UDP      other path: publisher / subscriber');
  for (const r of times) {
    const { udp, ...rest } = r.details.connectMs;
    const path = Object.keys(rest)[0]?.replace(/(Publisher|Subscriber)$/, '') ?? '';
    console.log(`${r.name.padEnd(24)} ${String(udp).padStart(5)}    ${path}: ${Object.values(rest).join(' / ')}`);
  }
}
// The closing notes: one line of measured figures from the scenarios that set `ctx.note`
// (cluster detection, rejoin and media-again times).
const notes = results.filter((r) => r.note);
if (notes.length) console.log(`\n${notes.map((r) => `${r.status === 'pass' ? '' : '(FAILED) '}${r.note}`).join('\n')}`);
const failed = results.filter((r) => r.status !== 'pass').length;
console.log(`\n${results.length - failed}/${results.length} passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(failed ? 1 : 0);
