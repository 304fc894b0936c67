// Prints the interop rows of out/results.json (a real run) as the markdown table of
// docs/interop.md: engine × direction × codec × DTLS version × DTLS cipher × SRTP profile.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const file = resolve(new URL('.', import.meta.url).pathname, 'out/results.json');
const { when, results } = JSON.parse(readFileSync(file, 'utf8'));
const dtlsName = (v) => ({ FEFD: 'DTLS 1.2 (FEFD)', FEFC: 'DTLS 1.3 (FEFC)' }[v] ?? v ?? '—');
const seen = new Set();
console.log(`Run of ${when}.\n`);
console.log('| engine | direction | codecs | DTLS version | DTLS cipher | SRTP profile | scenario |');
console.log('|---|---|---|---|---|---|---|');
for (const r of results) {
  for (const row of r.interop ?? []) {
    const line = `| ${row.engine} | ${row.direction} | ${row.codecs || '—'} | ${dtlsName(row.tlsVersion)} | ${row.dtlsCipher ?? '—'} | ${row.srtpCipher ?? '—'} | ${r.name} (${r.status}) |`;
    if (!seen.has(line)) console.log(line);
    seen.add(line);
  }
}
