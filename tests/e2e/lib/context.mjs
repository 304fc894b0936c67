// What a scenario gets: a running Sluice, browsers launched on demand (closed at the end of the
// scenario), page helpers that wait on getStats, aiortc runs, and a place to record interop rows.

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

import { launch } from './browsers.mjs';
import { startSluice, sleep } from './sluice.mjs';
import { inboundTotals, outboundTotals, summarize } from './stats.mjs';

const E2E = resolve(new URL('..', import.meta.url).pathname);
const PYTHON = process.env.SLUICE_E2E_PYTHON ?? resolve(E2E, '.venv/bin/python');

export class Context {
  constructor(name) {
    this.name = name;
    this.interop = [];
    this.details = {};
    // One line of figures the runner prints after its table (the closing notes).
    this.note = null;
    this.browsers = new Map();
    this.pages = [];
    this.children = [];
    this.server = null;
  }

  /** Starts Sluice; `options` go to startSluice (`turn`, `workers`, …). */
  async start(options = {}) {
    this.server = await startSluice(options);
    return this;
  }

  /**
   * Launches `engine` once per scenario; `this.browserOptions` (set by the scenario before its
   * first page: `chromiumArgs`, `acceptInsecureCerts`) go to the launch.
   */
  async browser(engine) {
    if (!this.browsers.has(engine)) this.browsers.set(engine, await launch(engine, { origin: this.server.origin, ...this.browserOptions }));
    return this.browsers.get(engine);
  }

  /** Opens an auto-joining page: `params` go to the URL (publish, simulcast, e2ee, relay, layer…). */
  async page(engine, room, identity, params = {}) {
    return this.openPage(engine, await this.server.pageUrl(room, identity, params), identity);
  }

  /** Opens `url` (an auto-joining demo page URL) and waits until the page is ready. */
  async openPage(engine, url, identity) {
    const b = await this.browser(engine);
    const page = await b.page(url);
    page.engine = engine;
    page.version = b.version;
    page.identity = identity;
    this.pages.push(page);
    await page.until(() => window.sluice?.ready || window.sluice?.errors?.length, null, 20_000, `${identity} ready`);
    const errors = await page.evaluate(() => window.sluice.errors);
    if (errors.length) throw new Error(`${identity} (${engine}): ${errors.join('; ')}\n${page.logs.slice(-10).join('\n')}`);
    return page;
  }

  async stats(page) {
    return summarize(await page.evaluate(() => window.sluice.room.stats()));
  }

  /**
   * Polls a page's stats until `pred(summary, inVideo, inAudio)` holds; returns the summary.
   * Throws with the last summary after `ms`.
   */
  async waitStats(page, pred, ms, what) {
    const end = Date.now() + ms;
    let sum;
    for (;;) {
      sum = await this.stats(page);
      if (pred(sum, inboundTotals(sum, 'video'), inboundTotals(sum, 'audio'))) return sum;
      if (Date.now() > end) {
        throw new Error(`${page.identity}: timed out after ${ms} ms waiting for ${what}; inbound video ${
          JSON.stringify(inboundTotals(sum, 'video'))} audio ${JSON.stringify(inboundTotals(sum, 'audio'))} outbound ${
          JSON.stringify(outboundTotals(sum, 'video'))}\npage log:\n${(await page.evaluate(() => window.sluice.log.slice(-12).join('\n')))}`);
      }
      await sleep(500);
    }
  }

  /** Waits until a page decoded `frames` video frames and got `audio` audio packets. */
  waitDecoded(page, { frames = 30, audio = 50, ms = 20_000 } = {}) {
    return this.waitStats(page, (_, v, a) => v.framesDecoded >= frames && (audio === 0 || a.packetsReceived >= audio), ms,
      `${frames} video frames decoded and ${audio} audio packets`);
  }

  /** Adds an interop row (engine, direction, codec, DTLS version, ciphers) from a page's stats. */
  recordInterop(page, direction, sum, pcName) {
    const t = sum.transport[pcName] ?? {};
    const codec = pcName === 'publisher'
      ? [outboundTotals(sum, 'video').codec, outboundTotals(sum, 'audio').codec]
      : [inboundTotals(sum, 'video').codec, inboundTotals(sum, 'audio').codec];
    this.interop.push({
      engine: `${page.engine} ${page.version}`,
      direction,
      codecs: codec.filter(Boolean).join(' + '),
      tlsVersion: t.tlsVersion ?? null,
      dtlsCipher: t.dtlsCipher ?? null,
      srtpCipher: t.srtpCipher ?? null,
      dtlsRole: t.dtlsRole ?? null,
    });
  }

  /** Runs tests/e2e/aiortc_client.py with args; resolves with its JSON result line. */
  aiortc(args, ms) {
    return new Promise((ok, fail) => {
      const child = spawn(PYTHON, [resolve(E2E, 'aiortc_client.py'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      this.children.push(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (c) => (out += c));
      child.stderr.on('data', (c) => (err += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      child.on('exit', (code) => {
        clearTimeout(timer);
        const line = out.trim().split('\n').pop();
        try {
          const result = JSON.parse(line);
          if (code === 0) ok(result);
          else fail(new Error(`aiortc exited ${code}: ${line}\n${err.slice(-1500)}`));
        } catch {
          fail(new Error(`aiortc exited ${code} without a result:\n${out.slice(-500)}\n${err.slice(-1500)}`));
        }
      });
    });
  }

  async close() {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const p of this.pages) await p.close().catch(() => {});
    for (const b of this.browsers.values()) await b.close().catch(() => {});
    if (this.server) await this.server.stop();
    // What a scenario started beside the server (a cluster's redis-server), stopped last.
    if (this.afterClose) await this.afterClose();
  }
}
