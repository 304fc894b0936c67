// Several `sluice up` nodes on one real `redis-server` (issue 15): the Redis instance is this
// scenario's own, on a Unix socket in a temporary directory, stopped at the end.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sleep, startSluice } from './sluice.mjs';

/** Starts `redis-server` on a Unix socket; resolves `{url, socket, stop()}` once it listens. */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  const socket = join(dir, 'redis.sock');
  const child = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exited = false;
  child.on('exit', () => (exited = true));
  const end = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (exited || Date.now() > end) throw new Error('redis-server did not start (tests/run.sh installs redis-server)');
    await sleep(50);
  }
  return {
    url: `unix:${socket}`,
    socket,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      const until = Date.now() + 3000;
      while (!exited && Date.now() < until) await sleep(50);
      if (!exited) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts nodes `ids` (one `sluice up` + dataplane each) on `redis`, sharing API keys. */
export async function startNodes(redis, ids, { leaseMs = 2000 } = {}) {
  const apiSecret = randomBytes(16).toString('hex');
  const nodes = {};
  for (const id of ids) {
    nodes[id] = await startSluice({ workers: '1', cluster: { redis: redis.url, nodeId: id, leaseMs, apiSecret } });
  }
  // Every node sees every other one.
  const end = Date.now() + 15_000;
  for (const n of Object.values(nodes)) {
    for (;;) {
      const r = await n.api('GET', '/api/cluster');
      if (r.status === 200 && r.body.nodes?.length === ids.length) break;
      if (Date.now() > end) throw new Error(`cluster not formed: ${JSON.stringify(r)}`);
      await sleep(100);
    }
  }
  return nodes;
}
