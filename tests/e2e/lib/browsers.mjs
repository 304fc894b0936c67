// Launching real browsers for the e2e scenarios with the flags from shared/testing-notes.md:
// Chromium through playwright-core (the Debian binary, no download), Firefox ESR through
// puppeteer-core over WebDriver BiDi (no geckodriver).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const FIREFOX = process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // Server candidates are on 127.0.0.1: without this Chromium gathers nothing in a lo-only netns.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // getDisplayMedia without a picker (screen-share scenario).
  '--auto-select-desktop-capture-source=Entire screen',
  '--auto-accept-this-tab-capture',
];

/**
 * A launched engine: `page(url)` opens a page in a fresh context; `close()` ends it all.
 * `chromiumArgs`: flags added to Chromium's; `trustPem`: a CA certificate (PEM) Firefox's profile
 * trusts (the throw-away CA of the TURN/TLS scenarios' coturn certificate).
 */
export async function launch(engine, { origin, chromiumArgs = [], trustPem = null } = {}) {
  if (engine === 'chromium') return launchChromium(chromiumArgs);
  if (engine === 'firefox') return launchFirefox(origin, trustPem);
  throw new Error(`unknown engine ${engine}`);
}

async function launchChromium(extraArgs) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
  return {
    engine: 'chromium',
    version: browser.version(),
    async page(url) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const logs = [];
      page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
      await page.goto(url);
      return wrap(page, logs, () => context.close());
    },
    close: () => browser.close(),
  };
}

async function launchFirefox(origin, trustPem) {
  const profile = mkdtempSync(join(tmpdir(), 'sluice-ff-'));
  if (origin) grantMedia(profile, origin);
  if (trustPem) trustCa(profile, trustPem);
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
    },
  });
  return {
    engine: 'firefox',
    version: await browser.version(),
    async page(url) {
      const page = await browser.newPage();
      const logs = [];
      page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
      await page.goto(url);
      return wrap(page, logs, () => page.close());
    },
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Pre-grants camera and microphone to `origin` in a Firefox profile's permissions.sqlite:
 * `media.navigator.permission.disabled` makes Firefox gather only the default-route address
 * (testing-notes.md), and BiDi cannot grant camera (Mozilla bug 1609427).
 */
function grantMedia(profile, origin) {
  const script = `
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS moz_perms (id INTEGER PRIMARY KEY, origin TEXT, type TEXT, permission INTEGER, expireType INTEGER, expireTime INTEGER, modificationTime INTEGER)")
now = int(time.time() * 1000)
for kind in ("camera", "microphone", "screen", "autoplay-media"):
    db.execute("INSERT INTO moz_perms (origin, type, permission, expireType, expireTime, modificationTime) VALUES (?, ?, 1, 0, 0, ?)", (sys.argv[2], kind, now))
db.execute("PRAGMA user_version = 12")
db.commit()
`;
  execFileSync('python3', ['-c', script, join(profile, 'permissions.sqlite'), origin]);
}

/**
 * Adds a CA certificate to a Firefox profile's NSS database as trusted for TLS servers
 * (`certutil -t "C,,"`, libnss3-tools). Firefox's TURN/TLS client checks the TURN server's
 * certificate against the profile's database; the BiDi session's acceptInsecureCerts does not
 * reach it, and a self-signed server certificate marked as a trusted peer ("P,,") is refused.
 */
function trustCa(profile, pem) {
  const file = join(profile, 'trusted-ca.pem');
  writeFileSync(file, pem);
  execFileSync('certutil', ['-N', '-d', `sql:${profile}`, '--empty-password']);
  execFileSync('certutil', ['-A', '-d', `sql:${profile}`, '-n', 'sluice-e2e-ca', '-t', 'C,,', '-i', file]);
}

/** The same small surface over a Playwright or Puppeteer page. */
function wrap(page, logs, close) {
  return {
    logs,
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    close,
    /** Polls `fn` in the page until it returns truthy or `ms` passes; returns the last value. */
    async until(fn, arg, ms, what) {
      const end = Date.now() + ms;
      let last;
      while (Date.now() < end) {
        last = await page.evaluate(fn, arg);
        if (last) return last;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}; page log:\n${logs.slice(-15).join('\n')}\n${
        (await page.evaluate(() => window.sluice?.log?.slice(-15).join('\n')).catch(() => '')) ?? ''}`);
    },
  };
}
