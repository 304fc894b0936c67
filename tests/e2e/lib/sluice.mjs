// Starting a real `sluice up` for a scenario: free ports on 127.0.0.1, a throw-away state
// directory, tokens from `sluice token`, and a clean stop. Every address is loopback.

import { execFile, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(new URL('../../..', import.meta.url).pathname);

export const SLUICE_BIN = resolve(ROOT, process.env.SLUICE_BIN ?? 'target/debug/sluice');
export const NETEM_BIN = resolve(ROOT, process.env.SLUICE_NETEM_BIN ?? 'target/debug/sluice-netem');

/** A free TCP port on 127.0.0.1 (bound then released; the race is acceptable for tests). */
export function freeTcpPort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** A free UDP port on 127.0.0.1. */
export function freeUdpPort() {
  return new Promise((ok, fail) => {
    const s = createSocket('udp4');
    s.once('error', fail);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Starts `sluice up` (`bin`, default SLUICE_BIN) with its own config and state directory, in the
 * default worker layout unless `workers` (or SLUICE_E2E_WORKERS) names one; `turn`
 * (`{urls, secret, relayIps}`) writes a `[turn]` section (TURN REST credentials in
 * `joined.ice_servers`). Resolves once `/readyz` answers (its dataplane is connected: a cluster
 * node is placed rooms from then on).
 * Returns `{origin, mediaAddr, token(room, identity, role), stop(), logs}`.
 *
 * The media port, unless `mediaPort` names one, is a free port picked here; a browser's ICE
 * socket can take it before the dataplane binds it, which the dataplane refuses by name
 * (`dataplane.port`, exit 2, and `sluice up` with it): then another port is picked, twice at most.
 */
export async function startSluice(opts = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSluiceOnce(opts);
    } catch (e) {
      if (opts.mediaPort || attempt >= 3 || !/dataplane\.port: .*in use/.test(e.message)) throw e;
      console.log(`startSluice: our media port was taken before the dataplane bound it; another port (attempt ${attempt + 1})`);
    }
  }
}

// `dataplaneDelayMs`: `sluice up` runs its dataplane through a wrapper that waits that long
// first, and this returns as soon as the control daemon serves (`/healthz`), before the
// dataplane is there (`/readyz`): a node whose dataplane is starting or restarting.
async function startSluiceOnce({ workers = process.env.SLUICE_E2E_WORKERS, bin = SLUICE_BIN, cluster = null, turn = null, mediaPort = null, dataplaneDelayMs = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
  const http = await freeTcpPort();
  const media = mediaPort ?? (await freeUdpPort());
  const config = join(dir, 'sluice.toml');
  writeFileSync(
    config,
    [
      '[control]',
      `http = "127.0.0.1:${http}"`,
      `state_file = "${join(dir, 'state.json')}"`,
      // A cluster's nodes share API keys: a token minted for one verifies on every node.
      ...(cluster?.apiSecret ? [`api_keys = { cluster = "${cluster.apiSecret}" }`] : []),
      '',
      '[dataplane]',
      // `sluice up`'s default unless SLUICE_E2E_WORKERS says otherwise: one worker per core (issue
      // 20: the suite runs what users run, so a fault that depends on the shard shows here).
      ...(workers ? [`workers = "${workers}"`] : []),
      'bind = "127.0.0.1"',
      `port = ${media}`,
      `control_socket = "${join(dir, 'dataplane.sock')}"`,
      'stats_interval_ms = 1000',
      // A cascading cluster's nodes share one trunk secret file (docs/cluster.md "Cascading").
      ...(cluster?.trunkSecretFile ? [`trunk_secret_file = "${cluster.trunkSecretFile}"`] : []),
      '',
      // `cluster`: {redis, nodeId, leaseMs?}: one node of a cluster (lib/cluster.mjs).
      ...(cluster
        ? [
            '[cluster]',
            `redis = "${cluster.redis}"`,
            `node_id = "${cluster.nodeId}"`,
            `advertise = "http://127.0.0.1:${http}"`,
            `lease_ms = ${cluster.leaseMs ?? 3000}`,
            ...(cluster.region ? [`region = "${cluster.region}"`] : []),
            ...(cluster.capacity ? [`capacity = ${cluster.capacity}`] : []),
            ...(cluster.media ? [`media = "${cluster.media}"`] : []),
            ...(cluster.relayGraceMs !== undefined ? [`relay_grace_ms = ${cluster.relayGraceMs}`] : []),
            '',
          ]
        : []),
      ...(turn
        ? [
            '[turn]',
            `urls = ${JSON.stringify(turn.urls)}`,
            `secret = "${turn.secret}"`,
            ...(turn.relayIps ? [`relay_ips = ${JSON.stringify(turn.relayIps)}`] : []),
            '',
          ]
        : []),
    ].join('\n'),
  );
  const logs = [];
  const upArgs = ['up', '--config', config];
  if (dataplaneDelayMs) {
    const wrapper = join(dir, 'slow-dataplane.sh');
    const real = join(dirname(bin), 'sluice-dataplane');
    writeFileSync(wrapper, `#!/bin/sh\nsleep ${dataplaneDelayMs / 1000}\nexec ${real} "$@"\n`, { mode: 0o755 });
    upArgs.push('--dataplane-bin', wrapper);
  }
  const child = spawn(bin, upArgs, {
    cwd: dir,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk) => {
    for (const line of chunk.toString().split('\n')) if (line) logs.push(line);
    if (logs.length > 2000) logs.splice(0, logs.length - 2000);
    if (process.env.SLUICE_E2E_LOG_FILE) appendFileSync(process.env.SLUICE_E2E_LOG_FILE, chunk);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));

  const origin = `http://127.0.0.1:${http}`;
  let admin = null;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`sluice up exited (${JSON.stringify(exited)}):\n${logs.slice(-30).join('\n')}`);
    }
    try {
      const res = await fetch(`${origin}/${dataplaneDelayMs ? 'healthz' : 'readyz'}`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      spawnSync('pkill', ['-KILL', '-f', `sluice-dataplane --config ${config}`]);
      throw new Error(`sluice up not ready (/readyz) after 20 s:\n${logs.slice(-30).join('\n')}`);
    }
    await sleep(100);
  }

  return {
    origin,
    mediaAddr: `127.0.0.1:${media}`,
    dir,
    logs,
    /** A participant token from `sluice token`; `region`: its region claim (cluster placement). */
    async token(room, identity, role = 'host', { region = null } = {}) {
      try {
        const flags = region ? ['--region', region] : [];
        const { stdout } = await run(SLUICE_BIN, ['token', '--config', config, '--room', room, '--identity', identity, '--role', role, ...flags], { cwd: dir });
        const jwt = stdout.match(/[\w-]+\.[\w-]+\.[\w-]+/);
        if (jwt) return jwt[0];
      } catch (e) {
        logs.push(`sluice token failed: ${e.message}`);
      }
      if (region) throw new Error(`no token with region ${region}: sluice token failed (${logs.at(-1)})`);
      const u = new URL('/dev/token', origin);
      u.search = new URLSearchParams({ room, identity, role }).toString();
      const res = await fetch(u);
      const text = (await res.text()).trim();
      if (!res.ok) throw new Error(`no token: sluice token failed and /dev/token said ${res.status} ${text}`);
      try {
        return JSON.parse(text).token;
      } catch {
        return text;
      }
    },
    /** An admin token (`sluice token --admin`) for the HTTP API, minted again after a minute. */
    async adminToken() {
      if (admin && Date.now() - admin.at < 60_000) return admin.jwt;
      const { stdout } = await run(SLUICE_BIN, ['token', '--config', config, '--admin'], { cwd: dir });
      const jwt = stdout.match(/[\w-]+\.[\w-]+\.[\w-]+/);
      if (!jwt) throw new Error(`sluice token --admin printed no token: ${stdout}`);
      admin = { jwt: jwt[0], at: Date.now() };
      return jwt[0];
    },
    /** Calls the admin API: resolves `{status, body}` (body parsed as JSON when it is). */
    async api(method, path, body) {
      const res = await fetch(`${origin}${path}`, {
        method,
        headers: { Authorization: `Bearer ${await this.adminToken()}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, body: parsed };
    },
    /** Sum of the dataplane's `sluice_worker_sessions` gauges from /metrics (null: none reported). */
    async dataplaneSessions() {
      const text = await fetch(`${origin}/metrics`).then((r) => r.text());
      const lines = text.split('\n').filter((l) => l.startsWith('sluice_worker_sessions{'));
      if (!lines.length) return null;
      return lines.reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    },
    /** The page URL that auto-joins with a fresh token (`region`: the token's region claim). */
    async pageUrl(room, identity, { role = 'host', region = null, ...params } = {}) {
      const q = new URLSearchParams({ token: await this.token(room, identity, role, { region }), auto: '1', name: identity });
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
      return `${origin}/?${q}`;
    },
    /** `kill -9` the node: the control daemon and its dataplane (a node dying). */
    killNode() {
      if (!exited) child.kill('SIGKILL');
      spawnSync('pkill', ['-KILL', '-f', `sluice-dataplane --config ${config}`]);
    },
    /** Sends `sig` to the control daemon only (`SIGSTOP`/`SIGCONT`: a frozen node). */
    signal(sig) {
      if (!exited) child.kill(sig);
    },
    get exited() {
      return exited;
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const end = Date.now() + 5000;
        while (!exited && Date.now() < end) await sleep(100);
        if (!exited) child.kill('SIGKILL');
      }
      // A clean stop takes the dataplane with it; after a SIGKILL (or a scenario that killed
      // the control daemon on purpose) it keeps running by design — end it here, found by the
      // config path only this scenario uses.
      spawnSync('pkill', ['-TERM', '-f', `sluice-dataplane --config ${config}`]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts `sluice-netem` in front of `upstream` with extra flags (`['--loss', '0.1']`). Control
 * lines (`pause up`, `resume down`, …) go to its stdin. Resolves once it prints `ready ADDR`.
 */
export async function startNetem(upstream, flags = []) {
  const child = spawn(NETEM_BIN, ['--listen', '127.0.0.1:0', '--upstream', upstream, '--seed', '7', ...flags], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = [];
  let exited = false;
  child.on('exit', () => (exited = true));
  child.stderr.on('data', (c) => out.push(c.toString()));
  const addr = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`sluice-netem not ready: ${out.join('')}`)), 5000);
    child.stdout.on('data', (c) => {
      out.push(c.toString());
      const m = out.join('').match(/ready (\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on('exit', () => fail(new Error(`sluice-netem exited: ${out.join('')}`)));
  });
  return {
    addr,
    out,
    send: (line) => child.stdin.write(`${line}\n`),
    async stop() {
      if (exited) return out.join('');
      child.stdin.write('quit\n');
      const end = Date.now() + 3000;
      while (!exited && Date.now() < end) await sleep(50);
      if (!exited) child.kill('SIGKILL');
      return out.join('');
    },
  };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
