// Prints the continuity rows of out/results.json (a real run, e.g. `node run.mjs table`) as the
// markdown table of issue 12: publisher → player, frames decoded in the window, frames per second
// against the sender's, longest freeze, seconds without a frame, and whether the check passed.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const file = resolve(new URL('.', import.meta.url).pathname, 'out/results.json');
const { when, results } = JSON.parse(readFileSync(file, 'utf8'));
console.log(`Run of ${when}.\n`);
console.log('| publisher → player | frames in window | fps (sender) | longest freeze | seconds without a frame | result |');
console.log('|---|---:|---:|---:|---:|---|');
for (const r of results) {
  for (const c of r.details?.continuity ?? []) {
    const freeze = Number.isFinite(c.longestFreezeMs) ? `${c.longestFreezeMs} ms` : '—';
    console.log(`| ${c.label} | ${c.frames} in ${c.windowS} s | ${c.fps} (${c.senderFps}) | ${freeze} | ${c.zeroSeconds} | ${c.ok ? 'continuous' : '**not continuous**'} (${r.name} ${r.status}) |`);
  }
}
