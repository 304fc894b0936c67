// A real coturn (Debian `coturn`, /usr/bin/turnserver) for the TURN/TLS scenarios: a TLS listener
// only (no plain UDP/TCP/DTLS listeners), a self-signed certificate made at start with openssl,
// the TURN REST secret scheme Sluice's `[turn]` section issues credentials for, and a relay
// address of its own (so the SFU sees relayed traffic come from an IP no browser uses). Every
// address is loopback; the caller stops it.

import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sleep } from './sluice.mjs';

const TURNSERVER = process.env.TURNSERVER_BIN ?? '/usr/bin/turnserver';

/**
 * Starts coturn with a TLS listener on `listenIp:tlsPort` (127.0.0.1, reached as `localhost`)
 * relaying from `relayIp`. Resolves once the TLS port accepts connections. Returns
 * `{url, secret, relayIp, spki, caPem, logs, stop()}`:
 * `url` is the `turns:` URL for `[turn] urls`, `spki` the base64 SHA-256 of the server
 * certificate's SubjectPublicKeyInfo (what Chromium's `--ignore-certificate-errors-spki-list`
 * takes), `caPem` the throw-away CA that signed it (what Firefox's profile trusts).
 */
export async function startCoturn({ listenIp = '127.0.0.1', relayIp = '127.0.0.2', tlsPort, minPort = 49160, maxPort = 49200 }) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-coturn-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const ca = join(dir, 'ca.pem');
  makeCertificate(dir, { ca, cert, key, listenIp });
  const spkiDer = execFileSync('sh', ['-c', `openssl x509 -in "${cert}" -pubkey -noout | openssl pkey -pubin -outform der`]);
  const spki = createHash('sha256').update(spkiDer).digest('base64');
  const secret = randomBytes(18).toString('base64url');
  const logs = [];
  const child = spawn(TURNSERVER, [
    '-n',
    `--listening-ip=${listenIp}`,
    `--relay-ip=${relayIp}`,
    `--tls-listening-port=${tlsPort}`,
    // Only the TLS listener: the browser can reach coturn no other way.
    '--no-udp', '--no-tcp', '--no-dtls',
    '--no-tlsv1', '--no-tlsv1_1',
    `--cert=${cert}`, `--pkey=${key}`,
    `--min-port=${minPort}`, `--max-port=${maxPort}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=sluice.test',
    // The SFU is on loopback: coturn refuses loopback peers unless told (testing-notes.md).
    '--allow-loopback-peers',
    // -v: one line per session event (allocations, permissions), not per packet.
    '-v', '--no-cli', '--log-file=stdout', '--simple-log',
    // Its own (unused: REST credentials need no user database) database, not /var/lib/turn's.
    `--db=${join(dir, 'turndb')}`,
    `--pidfile=${join(dir, 'turnserver.pid')}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (c) => {
    for (const line of c.toString().split('\n')) if (line) logs.push(line);
    if (logs.length > 1000) logs.splice(0, logs.length - 1000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));

  const end = Date.now() + 10_000;
  while (!(await accepts(listenIp, tlsPort))) {
    if (exited) throw new Error(`turnserver exited ${JSON.stringify(exited)}:\n${logs.slice(-20).join('\n')}`);
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`turnserver not listening on ${listenIp}:${tlsPort} after 10 s:\n${logs.slice(-20).join('\n')}`);
    }
    await sleep(100);
  }
  return {
    // By name: Firefox ignores a `turns:` URL whose host is an IP literal (it needs a name to check
    // the certificate against), so the certificate names both.
    url: `turns:localhost:${tlsPort}?transport=tcp`,
    secret,
    relayIp,
    spki,
    caPem: readFileSync(ca, 'utf8'),
    logs,
    get exited() {
      return exited;
    },
    /** Stops coturn (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const until = Date.now() + 3000;
        while (!exited && Date.now() < until) await sleep(50);
        if (!exited) child.kill('SIGKILL');
        while (!exited) await sleep(20);
      }
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}

/**
 * A throw-away CA and a server certificate it signs for `localhost` and `listenIp` (P-256, one
 * day). Not one self-signed certificate: Firefox refuses a CA certificate used as the server's
 * (and a self-signed one without CA:TRUE cannot be a trust anchor), so it gets a chain.
 */
function makeCertificate(dir, { ca, cert, key, listenIp }) {
  const caKey = join(dir, 'ca-key.pem');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  const ossl = (...args) => execFileSync('openssl', args, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-days', '1', '-subj', '/CN=Sluice e2e throw-away CA', '-keyout', caKey, '-out', ca);
  ossl('req', '-new', ...ec, '-subj', '/CN=localhost', '-keyout', key, '-out', csr);
  writeFileSync(ext, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:${listenIp}\n`);
  ossl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert);
}

/** Whether a TCP connection to `host:port` is accepted (then closed at once). */
function accepts(host, port) {
  return new Promise((ok) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      ok(true);
    });
    s.once('error', () => ok(false));
  });
}
