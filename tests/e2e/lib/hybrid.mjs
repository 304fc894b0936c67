// The hybrid P2P/SFU scenario (issue 8): three audio-only Chromium pages, each publishing a
// continuous tone of its own frequency, join an `auto` room one by one. With two the room is
// P2P (audio page<->page, no dataplane session); the third triggers the migration to SFU
// (`strategy` = hard_cut | gradual); every page must end in SFU mode with SFU audio flowing, and
// reports the longest audio gap its own meter heard during the switch (sluice-audio.js). Then
// the third page leaves and the room returns to P2P (p2p_at = 2), its SFU sessions gone.

import WebSocket from 'ws';

import { sleep, startNetem } from './sluice.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// Policy for the test: small thresholds, short cooldown/grace so it fits in < 60 s.
const POLICY = {
  default_mode: 'auto',
  sfu_at: 3,
  p2p_at: 2,
  prewarm_at: 2,
  cooldown_ms: 2000,
  ack_retry_ms: 1000,
  migration_timeout_ms: 15000,
  grace_ms: 1500,
};

/**
 * Creates room `name` in auto mode with the test policy. Returns null when done, or a reason to
 * skip when the server has no hybrid support at all (its API does not know the fields).
 */
async function createAutoRoom(server, name, strategy, overrides = {}) {
  const hybrid = { ...POLICY, strategy, ...overrides };
  const tries = [
    { name, config: { mode: 'auto' }, hybrid },
    { name, config: { mode: 'auto', hybrid } },
  ];
  const answers = [];
  for (const body of tries) {
    const r = await server.api('POST', '/api/rooms', body);
    if (r.status >= 200 && r.status < 300) return { created: r.body, form: body.hybrid ? 'top-level hybrid' : 'config.hybrid' };
    answers.push(`${r.status} ${JSON.stringify(r.body)}`);
  }
  const text = answers.join(' / ');
  if (/auto|hybrid/.test(text) && /unknown|variant|invalid/.test(text)) return { skip: `server has no hybrid room config: ${text}` };
  throw new Error(`POST /api/rooms (auto room) failed: ${text}`);
}

/** What a page's room says about modes, migrations and audio per path. */
function pageState(page) {
  return page.evaluate(async () => {
    const s = window.sluice;
    const room = s.room;
    const st = await room.stats();
    const audioIn = (reports) => reports.filter((r) => r.type === 'inbound-rtp' && r.kind === 'audio');
    const sfu = audioIn(st.subscriber);
    const p2p = Object.values(st.p2p ?? {}).flatMap(audioIn);
    return {
      mode: room.mode,
      setting: room.modeSetting,
      migrating: room.migration ? { id: room.migration.id, to: room.migration.to } : null,
      lastMigration: room.lastMigration,
      p2pPcs: room.p2pPcs.size,
      participants: room.participants.size,
      sfuAudio: { streams: sfu.length, packets: sfu.reduce((a, r) => a + (r.packetsReceived ?? 0), 0) },
      p2pAudio: { streams: p2p.length, packets: p2p.reduce((a, r) => a + (r.packetsReceived ?? 0), 0) },
      heard: s.remoteAudio.map((e) => `${e.identity}/${e.path}`),
      migrations: s.migrations,
      notices: s.notices,
      errors: s.errors,
    };
  });
}

/** Polls `pred(states)` over all pages until true; throws with the states and page logs after `ms`. */
async function waitPages(pages, pred, ms, what) {
  const end = Date.now() + ms;
  let states;
  for (;;) {
    states = await Promise.all(pages.map(pageState));
    if (pred(states)) return states;
    if (Date.now() > end) {
      const logs = await Promise.all(pages.map((p) => p.evaluate(() => window.sluice.log.slice(-15).join('\n')).catch(() => '?')));
      throw new Error(`timed out after ${ms} ms waiting for ${what}:\n${pages.map((p, i) => `${p.identity}: ${JSON.stringify(states[i])}\n${logs[i]}`).join('\n')}`);
    }
    await sleep(300);
  }
}

/** An interop row for a page's P2P PC to its first mesh peer (transport report of that PC). */
async function p2pInterop(page, direction) {
  const t = await page.evaluate(async () => {
    const pcs = [...window.sluice.room.p2pPcs.values()];
    if (!pcs.length) return null;
    const out = { codecs: [] };
    (await pcs[0].getStats()).forEach((r) => {
      if (r.type === 'transport') Object.assign(out, { tlsVersion: r.tlsVersion, dtlsCipher: r.dtlsCipher, srtpCipher: r.srtpCipher, dtlsRole: r.dtlsRole });
      if (r.type === 'codec') out.codecs.push(r.mimeType);
    });
    return out;
  });
  if (!t) return null;
  return {
    engine: `${page.engine} ${page.version}`,
    direction,
    codecs: [...new Set(t.codecs)].join(' + '),
    tlsVersion: t.tlsVersion ?? null,
    dtlsCipher: t.dtlsCipher ?? null,
    srtpCipher: t.srtpCipher ?? null,
    dtlsRole: t.dtlsRole ?? null,
  };
}

/** Dataplane sessions of the room: the API's count (if reported) and the /metrics gauge sum. */
async function sessions(server, room) {
  const r = await server.api('GET', `/api/rooms/${room}`);
  const api = r.body?.dataplane_sessions ?? r.body?.room?.dataplane_sessions ?? null;
  return { api, metrics: await server.dataplaneSessions(), mode: r.body?.mode ?? r.body?.room?.mode ?? null };
}

/** Waits until both session counts (where reported) satisfy `pred`; the metrics gauge lags ~1 s. */
async function waitSessions(server, room, pred, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await sessions(server, room);
    if ((s.api === null || pred(s.api)) && (s.metrics === null || pred(s.metrics))) return s;
    if (Date.now() > end) throw new Error(`dataplane sessions never ${what}: ${JSON.stringify(s)}`);
    await sleep(300);
  }
}

/**
 * A signaling-only participant (no media) that joins while a migration runs: the server must
 * answer `join_queued`, then `joined` once the migration ended, in the room's new mode.
 * Resolves `{queued, joined: {mode}, waitedMs, close()}`; bounded by `ms`.
 */
function queuedJoin(server, token, ms) {
  const url = `${server.origin.replace(/^http/, 'ws')}/rtc?access_token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url);
  const t0 = Date.now();
  let queued = null;
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      ws.terminate();
      fail(new Error(`queued join: no joined within ${ms} ms (queued: ${JSON.stringify(queued)})`));
    }, ms);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'join', req: 0, capabilities: ['p2p'] })));
    ws.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'join_queued') queued = { position: msg.position, estimated_wait_ms: msg.estimated_wait_ms, atMs: Date.now() - t0 };
      if (msg.type === 'mode_change') ws.send(JSON.stringify({ type: 'mode_ack', id: msg.id }));
      if (msg.type === 'joined') {
        clearTimeout(timer);
        ok({ queued, joined: { mode: msg.mode }, waitedMs: Date.now() - t0, close: () => ws.close() });
      }
      if (msg.type === 'error') {
        clearTimeout(timer);
        fail(new Error(`queued join refused: ${JSON.stringify(msg)}`));
      }
    });
  });
}

export async function hybridMigration(ctx, strategy) {
  const t0 = Date.now();
  const marks = {};
  const mark = (name) => (marks[name] = ((Date.now() - t0) / 1000).toFixed(1));
  const made = await createAutoRoom(ctx.server, 'r1', strategy);
  if (made.skip) {
    console.log(`SKIP hybrid_${strategy}: ${made.skip}`);
    ctx.details = { skipped: made.skip };
    return;
  }
  const open = (identity, role, tone) => ctx.page('chromium', 'r1', identity, { role, publish: 'tone', tone });
  const p1 = await open('p1', 'host', 440);
  const first = await pageState(p1);
  if (first.setting === null) {
    const reason = 'joined has no `mode` (server without hybrid signaling)';
    console.log(`SKIP hybrid_${strategy}: ${reason}`);
    ctx.details = { skipped: reason };
    return;
  }
  check(first.mode === 'p2p', `p1 joined an auto room of 1 in mode ${first.mode} (setting ${first.setting})`);
  const p2 = await open('p2', 'controller', 660);
  mark('two_joined');

  // Two pages: P2P, each hears the other over its P2P PC, and no dataplane session exists.
  await waitPages([p1, p2], (st) => st.every((s, i) => s.mode === 'p2p' && s.heard.includes(`${i === 0 ? 'p2' : 'p1'}/p2p`) && s.p2pAudio.packets > 50),
    15_000, 'P2P audio both ways');
  mark('p2p_audio');
  const p2pSessions = await waitSessions(ctx.server, 'r1', (n) => n === 0, 3000, 'zero in P2P');
  const meshRow = await p2pInterop(p2, 'chromium ↔ chromium P2P mesh (offers/answers relayed by p2p_signal)');
  if (meshRow) ctx.interop.push(meshRow);

  // The third page reaches sfu_at: every page migrates to SFU. A fourth participant (signaling
  // only) joins as soon as p1 sees the migration: its join is queued until the migration ends.
  const lateToken = await ctx.server.token('r1', 'late', 'viewer');
  const opening = open('p3', 'controller', 880);
  await p1.until(() => window.sluice.room.migration || window.sluice.room.lastMigration, null, 15_000, 'p1 sees the migration start');
  const late = await queuedJoin(ctx.server, lateToken, 35_000);
  const p3 = await opening;
  mark('third_joined');
  const pages = [p1, p2, p3];
  const migrated = await waitPages(pages, (st) => st.every((s) => s.mode === 'sfu' && !s.migrating && s.lastMigration?.duration_ms != null && s.lastMigration.to === 'sfu'),
    25_000, 'every page in SFU mode after a migration');
  mark('sfu');
  if (process.env.SLUICE_E2E_HYBRID_LOGS) {
    for (const pg of pages) console.log(`--- ${pg.identity}\n${await pg.evaluate(() => window.sluice.log.slice(-14).join('\n'))}`);
  }
  // A failed first attempt (mode_failed -> fallback to P2P -> retry) would still end in SFU: the
  // client must get it right the first time.
  // (A newcomer may get its mode_change before the page listens: its list can be empty.)
  const attempts = migrated.map((s, i) => ({ page: pages[i].identity, id: s.lastMigration.id, migrations: s.migrations.map((m) => `${m.id}:${m.to}:${m.reason}`), errors: s.errors }));
  check(!attempts.some((a) => a.errors.length || a.migrations.length > 1 || a.id !== attempts[0].id),
    `the migration to SFU did not go through at the first attempt: ${JSON.stringify(attempts)}`);
  for (const [i, s] of migrated.entries()) {
    check(s.lastMigration.strategy === strategy, `${pages[i].identity} migrated with ${s.lastMigration.strategy}, configured ${strategy}`);
  }
  const gaps = migrated.map((s, i) => ({ page: pages[i].identity, audio_gap_ms: s.lastMigration.audio_gap_ms, switch_ms: s.lastMigration.switch_ms, duration_ms: s.lastMigration.duration_ms }));
  const measured = gaps.map((g) => g.audio_gap_ms).filter((g) => g !== null);
  console.log(`AUDIO_GAP strategy=${strategy} max_ms=${measured.length ? Math.max(...measured) : 'none'} per_page=${JSON.stringify(gaps)}`);

  // SFU audio keeps flowing: every page hears both others over the subscriber PC.
  const before = migrated.map((s) => s.sfuAudio.packets);
  await sleep(2000);
  const after = await Promise.all(pages.map(pageState));
  for (const [i, s] of after.entries()) {
    check(s.sfuAudio.streams >= 2, `${pages[i].identity} has ${s.sfuAudio.streams} SFU audio streams`);
    check(s.sfuAudio.packets - before[i] >= 100, `${pages[i].identity}: SFU audio grew by ${s.sfuAudio.packets - before[i]} packets in 2 s`);
  }
  const sum = await ctx.stats(p1);
  ctx.recordInterop(p1, `chromium publishes after the P2P→SFU migration (${strategy})`, sum, 'publisher');
  ctx.recordInterop(p1, `chromium subscribes after the P2P→SFU migration (${strategy})`, sum, 'subscriber');
  const sfuSessions = await sessions(ctx.server, 'r1');
  check(sfuSessions.api === null || sfuSessions.api > 0, `SFU mode but the API reports ${sfuSessions.api} dataplane sessions`);
  // Gradual closes P2P after grace_ms; hard cut closed it at the start.
  await waitPages(pages, (st) => st.every((s) => s.p2pPcs === 0), POLICY.grace_ms + 4000, 'P2P PCs closed');
  mark('p2p_closed');

  // The queued participant: admitted after the migration, in SFU mode (or admitted at once
  // when the migration had already ended; said in the details, not a failure).
  if (late.queued) check(late.joined.mode?.mode === 'sfu', `the queued join was admitted in mode ${JSON.stringify(late.joined.mode)}`);
  late.close();
  await waitPages([p1, p2, p3], (st) => st.every((s) => s.participants === 2), 5000, 'the late participant gone');

  // p3 leaves: 2 <= p2p_at, after the cooldown the room returns to P2P and its sessions go.
  await p3.evaluate(() => window.sluice.room.leave());
  const back = await waitPages([p1, p2], (st) => st.every((s) => s.mode === 'p2p' && s.lastMigration?.to === 'p2p' && s.lastMigration.duration_ms != null),
    POLICY.cooldown_ms + 15_000, 'both pages back in P2P');
  mark('back_p2p');
  const backGaps = back.map((s, i) => ({ page: [p1, p2][i].identity, audio_gap_ms: s.lastMigration.audio_gap_ms, duration_ms: s.lastMigration.duration_ms }));
  const backMeasured = backGaps.map((g) => g.audio_gap_ms).filter((g) => g !== null);
  console.log(`AUDIO_GAP strategy=${strategy} direction=sfu_to_p2p max_ms=${backMeasured.length ? Math.max(...backMeasured) : 'none'} per_page=${JSON.stringify(backGaps)}`);
  const p2pBefore = back.map((s) => s.p2pAudio.packets);
  await sleep(1500);
  const p2pAfter = await Promise.all([p1, p2].map(pageState));
  for (const [i, s] of p2pAfter.entries()) {
    check(s.p2pAudio.packets - p2pBefore[i] >= 50, `${[p1, p2][i].identity}: P2P audio grew by ${s.p2pAudio.packets - p2pBefore[i]} packets in 1.5 s after the return`);
  }
  const endSessions = await waitSessions(ctx.server, 'r1', (n) => n === 0, 8000, 'zero after the return to P2P');
  mark('sessions_gone');

  ctx.details = {
    strategy,
    roomForm: made.form,
    audioGapMs: gaps,
    returnGapMs: backGaps,
    sessions: { p2p: p2pSessions, sfu: sfuSessions, back: endSessions },
    attempts,
    queuedJoin: { queued: late.queued, admittedAfterMs: late.waitedMs, mode: late.joined.mode },
    marks,
  };
}

/**
 * The SFU side fails during a gradual P2P→SFU migration: p1's SFU media goes through a paused
 * `sluice-netem` relay, so its publisher never connects; p1 reports mode_failed after its bounded
 * wait, the server falls back (`mode_change {to: p2p, reason: sfu_failed}` + `notice`), every page
 * stays in P2P and keeps hearing the others over the mesh without a gap. Then the relay resumes:
 * once the cooldown passed, the room's next migration to SFU (if the server retries) succeeds.
 */
export async function hybridSfuFailure(ctx) {
  const t0 = Date.now();
  const marks = {};
  const mark = (name) => (marks[name] = ((Date.now() - t0) / 1000).toFixed(1));
  // The server retries once the cooldown passed (the dataplane link is up all along): long
  // enough here that the P2P checks after the fallback run before that retry.
  const cooldown = 9000;
  const made = await createAutoRoom(ctx.server, 'r1', 'gradual', { cooldown_ms: cooldown });
  if (made.skip) {
    console.log(`SKIP hybrid_sfu_failure: ${made.skip}`);
    ctx.details = { skipped: made.skip };
    return;
  }
  const relay = await startNetem(ctx.server.mediaAddr);
  try {
    relay.send('pause both');
    const p1 = await ctx.page('chromium', 'r1', 'p1', { role: 'host', publish: 'tone', tone: 440, relay: relay.addr });
    const p2 = await ctx.page('chromium', 'r1', 'p2', { role: 'controller', publish: 'tone', tone: 660 });
    await waitPages([p1, p2], (st) => st.every((s, i) => s.mode === 'p2p' && s.heard.includes(`${i === 0 ? 'p2' : 'p1'}/p2p`)), 15_000, 'P2P audio both ways');
    mark('p2p_audio');
    const p3 = await ctx.page('chromium', 'r1', 'p3', { role: 'controller', publish: 'tone', tone: 880 });
    const pages = [p1, p2, p3];
    // p1 gives up after its 8 s bound; the fallback is immediate.
    const fell = await waitPages(pages, (st) => st.every((s) => s.mode === 'p2p' && !s.migrating && s.notices.some((n) => n.code === 'sfu_failed')),
      20_000, 'the fallback to P2P (notice sfu_failed) on every page');
    mark('fell_back');
    // Every page waits for p1's SFU audio too: whichever gives up first reports mode_failed.
    const failedAt = fell.map((s, i) => [pages[i].identity, s.errors.find((e) => /migration .* to sfu failed/.test(e))]).filter(([, e]) => e);
    check(failedAt.length > 0, `no page reported the failed migration: ${JSON.stringify(fell.map((s) => s.errors))}`);
    // Every page hears both others over P2P (p3 joined while the room was already migrating:
    // its mesh comes from the fallback), and the SFU sessions are gone.
    const meshUp = await waitPages(pages, (st) => st.every((s, i) => s.p2pPcs === 2
      && ['p1', 'p2', 'p3'].filter((_, j) => j !== i).every((o) => s.heard.includes(`${o}/p2p`))),
    10_000, 'a full P2P mesh with audio after the fallback');
    const before = meshUp.map((s) => s.p2pAudio.packets);
    await sleep(1500);
    const after = await Promise.all(pages.map(pageState));
    for (const [i, s] of after.entries()) {
      check(s.p2pAudio.packets - before[i] >= 100, `${pages[i].identity}: P2P audio grew by ${s.p2pAudio.packets - before[i]} packets in 1.5 s after the fallback`);
    }
    const p2pSessions = await waitSessions(ctx.server, 'r1', (n) => n === 0, 8000, 'zero after the fallback');
    mark('p2p_checked');
    // The SFU path works again: whether and when the server retries is its policy (cooldown and
    // a healthy link); if it does within 15 s, the retry must succeed.
    relay.send('resume both');
    let retried = null;
    try {
      const st = await waitPages(pages, (all) => all.every((s) => s.mode === 'sfu' && !s.migrating), cooldown + 8000, 'a retried migration to SFU');
      retried = st.map((s, i) => ({ page: pages[i].identity, id: s.lastMigration?.id, audio_gap_ms: s.lastMigration?.audio_gap_ms }));
      mark('retried_sfu');
    } catch (e) {
      if (after.some((s) => s.migrating)) throw e;
      retried = `no retry within ${cooldown + 8000} ms (server policy)`;
    }
    ctx.details = {
      fallback: fell.map((s, i) => ({ page: pages[i].identity, migrations: s.migrations.map((m) => `${m.id}:${m.to}:${m.reason}`), notices: s.notices.map((n) => n.code) })),
      modeFailedBy: failedAt,
      p2pSessions,
      retried,
      marks,
    };
  } finally {
    await relay.stop();
  }
}
