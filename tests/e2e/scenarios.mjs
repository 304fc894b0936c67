// The e2e scenarios (issue 5 §3). Each one gets a fresh Context (its own `sluice up`), asserts on
// what the receiver DECODED (getStats framesDecoded / packetsReceived / frameWidth, aiortc
// frames), and is bounded in time by the runner.

import { assertContinuity, fromFrameTimes, fromSamples, samplePage } from './lib/continuity.mjs';
import { assertFeedback, watchFeedback } from './lib/feedback.mjs';
import { cascadeScenarios } from './scenarios-cascade.mjs';
import { clusterScenarios } from './scenarios-cluster.mjs';
import { dataScenarios } from './scenarios-data.mjs';
import { hybridMigration, hybridSfuFailure } from './lib/hybrid.mjs';
import { inputScenarios } from './scenarios-input.mjs';
import { interopScenarios } from './scenarios-interop.mjs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tcpScenarios } from './scenarios-tcp.mjs';
import { turnScenarios } from './scenarios-turn.mjs';
import { startNetem, sleep } from './lib/sluice.mjs';
import { inboundTotals, outboundTotals } from './lib/stats.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// The senders' frame rates, stated (continuity is judged against them, issue 12 §5):
// Chromium's fake camera (shared/testing-notes.md), Firefox's fake camera (measured: 30 fps at
// 640x480 decoded by a Chromium subscriber), aiortc's VideoStreamTrack (VIDEO_PTIME = 1/30;
// the client also reports it as `video_fps`).
export const FPS = { chromium: 20, firefox: 30, aiortc: 30 };
/** Chromium's fake screen capture (measured: 20 fps through a 10 s window, like its camera). */
const SCREEN_FPS = 20;
/** Seconds of the continuity window where media quality is the point. */
const QUALITY_WINDOW_S = 20;

/**
 * Samples what `page` decodes for `seconds` (after its first frame), asserts continuity against
 * `senderFps`, and keeps the summary in `ctx.details.continuity` (printed pass or fail).
 */
async function pageContinuity(ctx, page, label, senderFps, seconds, opts = {}) {
  const c = fromSamples(await samplePage(page, { seconds, kind: opts.kind ?? 'video' }));
  return keep(ctx, () => assertContinuity(label, c, { senderFps, minWindowS: seconds * 0.9, ...opts }), label, c, senderFps);
}

/** The same from an aiortc player's per-frame arrival times. */
function aiortcContinuity(ctx, play, label, senderFps, seconds, opts = {}) {
  const c = fromFrameTimes(play.video_times_ms ?? [], play.window_end_ms);
  return keep(ctx, () => assertContinuity(label, c, { senderFps, minWindowS: seconds * 0.8, ...opts }), label, c, senderFps);
}

function keep(ctx, assert, label, c, senderFps) {
  ctx.details.continuity ??= [];
  try {
    const summary = assert();
    ctx.details.continuity.push({ ...summary, ok: true });
    return summary;
  } catch (e) {
    ctx.details.continuity.push({ label, frames: c.frames, windowS: c.windowS, fps: c.windowS > 0 ? Number((c.frames / c.windowS).toFixed(1)) : 0, senderFps, zeroSeconds: c.zeroSeconds, longestFreezeMs: c.longestFreezeMs, perSecond: c.perSecond.join(','), ok: false });
    throw e;
  }
}

/**
 * A second of decoded video (20 frames) before a continuity window opens. With one frame, a page
 * that decoded its first keyframe and then settled for ~2.3 s opened its 20 s window late and
 * failed on a 17.7 s window (chromium_to_chromium once in a full run, fanout once in CI).
 */
function firstFrames(ctx, page, ms = 20_000) {
  return ctx.waitDecoded(page, { frames: 20, audio: 0, ms });
}

/**
 * A publishes camera+mic from `pubEngine`; B on `subEngine` receives both and decodes video
 * continuously for `seconds` at the publisher's frame rate.
 */
async function oneWay(ctx, pubEngine, subEngine, seconds = 10) {
  const pub = await ctx.page(pubEngine, 'r1', 'alice', { role: 'host' });
  const sub = await ctx.page(subEngine, 'r1', 'bob', { role: 'viewer', publish: 'none' });
  await firstFrames(ctx, sub);
  ctx.details = {};
  const feedback = watchFeedback(ctx.server, 'r1', 'bob');
  await pageContinuity(ctx, sub, `${pubEngine} → ${subEngine}`, FPS[pubEngine], seconds);
  ctx.details.sfuFeedback = assertFeedback(`${subEngine} subscriber`, await feedback.done(), { transportCc: true, minSamples: seconds / 2 });
  const s = await ctx.stats(sub);
  const v = inboundTotals(s, 'video');
  check(v.frameWidth >= 320, `frameWidth ${v.frameWidth}`);
  check(inboundTotals(s, 'audio').packetsReceived >= 50, `audio packets ${inboundTotals(s, 'audio').packetsReceived}`);
  const p = await ctx.stats(pub);
  ctx.recordInterop(pub, `${pubEngine} publishes`, p, 'publisher');
  ctx.recordInterop(sub, `${subEngine} subscribes (from ${pubEngine})`, s, 'subscriber');
  Object.assign(ctx.details, { framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, audioPackets: inboundTotals(s, 'audio').packetsReceived, codec: v.codec });
}

export const scenarios = {
  async chromium_to_chromium(ctx) {
    await oneWay(ctx, 'chromium', 'chromium', QUALITY_WINDOW_S);
  },

  async firefox_to_chromium(ctx) {
    await oneWay(ctx, 'firefox', 'chromium');
  },

  async chromium_to_firefox(ctx) {
    await oneWay(ctx, 'chromium', 'firefox');
  },

  /** aiortc publishes over WHIP; a Chromium page in the room decodes it for 20 s. */
  async aiortc_to_chromium(ctx) {
    const token = await ctx.server.token('r1', 'aio', 'host');
    const publishing = ctx.aiortc(['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', token, '--seconds', String(QUALITY_WINDOW_S + 12)], 60_000);
    publishing.catch(() => {}); // awaited below; a failure there must not go unhandled meanwhile
    const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
    await firstFrames(ctx, sub, 15_000);
    ctx.details = {};
    let failure = null;
    const feedback = watchFeedback(ctx.server, 'r1', 'bob');
    await pageContinuity(ctx, sub, 'aiortc → chromium', FPS.aiortc, QUALITY_WINDOW_S).catch((e) => (failure = e));
    const sfuFeedback = await feedback.done();
    const s = await ctx.stats(sub);
    const pub = await publishing;
    check(pub.video_fps === FPS.aiortc, `aiortc states ${pub.video_fps} fps, the test assumes ${FPS.aiortc}`);
    ctx.recordInterop(sub, 'chromium subscribes (from aiortc WHIP)', s, 'subscriber');
    ctx.interop.push({ engine: `aiortc ${pub.version}`, direction: 'aiortc publishes (WHIP)', codecs: pub.codecs, tlsVersion: pub.tls ?? null, dtlsCipher: pub.cipher ?? null, srtpCipher: pub.srtp ?? null });
    const v = inboundTotals(s, 'video');
    Object.assign(ctx.details, { framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, codec: v.codec, packetsReceived: v.packetsReceived, published: pub.packets_sent, sfuFeedback });
    if (failure) throw failure;
    assertFeedback('chromium subscriber', sfuFeedback, { transportCc: true });
  },

  /** A Chromium page publishes; aiortc plays the room over WHEP and decodes frames for 20 s. */
  async chromium_to_aiortc(ctx) {
    const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const token = await ctx.server.token('r1', 'aio', 'viewer');
    const feedback = watchFeedback(ctx.server, 'r1', 'aio');
    const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', String(QUALITY_WINDOW_S + 2)], 60_000);
    const sfuFeedback = await feedback.done();
    ctx.recordInterop(pub, 'chromium publishes (to aiortc WHEP)', await ctx.stats(pub), 'publisher');
    ctx.interop.push({ engine: `aiortc ${play.version}`, direction: 'aiortc subscribes (WHEP)', codecs: play.codecs, tlsVersion: play.tls ?? null, dtlsCipher: play.cipher ?? null, srtpCipher: play.srtp ?? null });
    const { video_times_ms: _times, ...rest } = play;
    ctx.details = { ...rest, sfuFeedback };
    aiortcContinuity(ctx, play, 'chromium → aiortc (WHEP)', FPS.chromium, QUALITY_WINDOW_S);
    assertFeedback('aiortc WHEP subscriber', sfuFeedback, { transportCc: false });
  },

  /** WHIP publish and WHEP play, both from scripts (aiortc), no browser; 20 s of play. */
  async whip_whep(ctx) {
    const pubToken = await ctx.server.token('r1', 'whip', 'host');
    const publishing = ctx.aiortc(['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', pubToken, '--seconds', String(QUALITY_WINDOW_S + 8)], 60_000);
    publishing.catch(() => {});
    await sleep(2500);
    const subToken = await ctx.server.token('r1', 'whep', 'viewer');
    const feedback = watchFeedback(ctx.server, 'r1', 'whep');
    const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', subToken, '--seconds', String(QUALITY_WINDOW_S + 1)], 60_000);
    const sfuFeedback = await feedback.done();
    const published = await publishing;
    const { video_times_ms: _times, ...rest } = play;
    ctx.details = { ...rest, published: published.packets_sent, sfuFeedback };
    // RFC 9725 §4.1/§4.2: 201 with a Location the session is ended with (DELETE).
    for (const [r, kind] of [[published, 'whip'], [play, 'whep']]) {
      check(new RegExp(`/${kind}/r1/[^/]+$`).test(r.resource ?? ''), `${kind} Location ${r.resource}`);
      check(r.delete_status === 200, `${kind} DELETE answered ${r.delete_status}`);
    }
    check(published.video_fps === FPS.aiortc, `aiortc states ${published.video_fps} fps, the test assumes ${FPS.aiortc}`);
    aiortcContinuity(ctx, play, 'aiortc → aiortc (WHEP)', FPS.aiortc, QUALITY_WINDOW_S);
    // Opus at 20 ms: 50 frames a second.
    check(play.audio_frames >= 0.8 * 50 * QUALITY_WINDOW_S, `WHEP decoded ${play.audio_frames} audio frames in ${QUALITY_WINDOW_S} s`);
    assertFeedback('aiortc WHEP subscriber', sfuFeedback, { transportCc: false });
  },

  /**
   * Three layers published; the subscriber asks for low, then high; frameWidth follows, and
   * the video stays continuous across the switch (12 s window, the switch 4 s in).
   */
  async simulcast(ctx) {
    const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host', simulcast: 1, publish: 'camera' });
    const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none', layer: 0 });
    const low = await ctx.waitStats(sub, (_, v) => v.framesDecoded >= 30 && v.frameWidth > 0 && v.frameWidth <= 320, 20_000, 'low layer (width <= 320)');
    const lowWidth = inboundTotals(low, 'video').frameWidth;
    const sid = await sub.evaluate(() => [...window.sluice.room.subscriptions.values()].find((s) => s.track.kind === 'video').trackSid);
    ctx.details = {};
    const sampling = samplePage(sub, { seconds: 12 });
    await sleep(4000);
    await sub.evaluate((trackSid) => window.sluice.room.setLayer(trackSid, 2), sid);
    const c = fromSamples(await sampling);
    keep(ctx, () => assertContinuity('chromium simulcast low → high', c, { senderFps: FPS.chromium, minWindowS: 11 }), 'chromium simulcast low → high', c, FPS.chromium);
    const high = await ctx.waitStats(sub, (_, v) => v.frameWidth >= 640, 25_000, 'high layer (width >= 640)');
    const layers = outboundTotals(await ctx.stats(pub), 'video').streams;
    Object.assign(ctx.details, { lowWidth, highWidth: inboundTotals(high, 'video').frameWidth, publishedLayers: layers });
  },

  /** The host shares a screen (Chromium's fake display); a viewer receives it. */
  async screen_share(ctx) {
    await ctx.page('chromium', 'r1', 'host', { role: 'host', publish: 'screen' });
    const viewer = await ctx.page('chromium', 'r1', 'viewer', { role: 'viewer', publish: 'none' });
    await firstFrames(ctx, viewer);
    ctx.details = {};
    await pageContinuity(ctx, viewer, 'chromium screen share', SCREEN_FPS, 10);
    const s = await ctx.stats(viewer);
    const sources = await viewer.evaluate(() => Object.values(window.sluice.tracks).map((t) => t.source));
    check(sources.includes('screen'), `viewer's tracks have sources ${JSON.stringify(sources)}`);
    Object.assign(ctx.details, { framesDecoded: inboundTotals(s, 'video').framesDecoded, frameWidth: inboundTotals(s, 'video').frameWidth, sources });
  },

  /** One publisher, N subscriber pages (N=4 on 2 cores), every one decodes continuously for 20 s. */
  async fanout(ctx) {
    const n = Number(process.env.SLUICE_E2E_FANOUT ?? 4);
    await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const subs = [];
    for (let i = 0; i < n; i++) subs.push(await ctx.page('chromium', 'r1', `viewer${i}`, { role: 'viewer', publish: 'none' }));
    // A second of decoded video on every page before the window opens (as `firstFrames`): with
    // one frame, a page still settling its first keyframes opened a window of 17.7 s once in CI
    // (5 Chromium pages on 2 cores).
    await Promise.all(subs.map((p) => ctx.waitDecoded(p, { frames: 20, audio: 30, ms: 30_000 })));
    ctx.details = { subscribers: n };
    const timelines = await Promise.all(subs.map((p) => samplePage(p, { seconds: QUALITY_WINDOW_S })));
    const failures = [];
    timelines.forEach((t, i) => {
      const c = fromSamples(t);
      try {
        keep(ctx, () => assertContinuity(`chromium → viewer${i}`, c, { senderFps: FPS.chromium, minWindowS: QUALITY_WINDOW_S * 0.9 }), `chromium → viewer${i}`, c, FPS.chromium);
      } catch (e) {
        failures.push(e.message);
      }
    });
    if (failures.length) throw new Error(failures.join('\n'));
  },

  /** 10% loss on the publisher's uplink: the server NACKs (nackCount > 0), video keeps decoding. */
  async loss_10pct(ctx) {
    const relay = await startNetem(ctx.server.mediaAddr, ['--loss', '0.1']);
    try {
      const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host', relay: relay.addr });
      const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
      await firstFrames(ctx, sub);
      ctx.details = {};
      // Repair takes a round trip: a freeze of up to a second is what 10 % loss may cost.
      await pageContinuity(ctx, sub, 'chromium → chromium, 10 % uplink loss', FPS.chromium, 10, { maxFreezeMs: 1000, minShare: 0.7 });
      const out = outboundTotals(await ctx.stats(pub), 'video');
      check(out.nackCount > 0, `publisher nackCount ${out.nackCount} (the server never NACKed)`);
      ctx.details.nackCount = out.nackCount;
    } finally {
      ctx.details.relay = (await relay.stop()).trim().split('\n').pop();
    }
  },

  /**
   * Issue 12: a 3-layer simulcast Chromium publisher; the subscriber's downlink (through
   * sluice-netem) is capped at 400 kbit/s for 10 s, then freed. The SFU's estimate (transport-cc
   * from Chromium) must take the subscriber to the low layer within 2 s of the cap, the video
   * must never freeze for more than 1 s, and the high layer must be back within 5 s of the
   * release. Prints the timeline: what the page decodes (width, frames) and what the SFU says
   * (GET /api/rooms/r1/stats: estimate, its source, the allocated and forwarded layer).
   */
  async downlink_cap(ctx) {
    // 300 ms of queue at 400 kbit/s (the relay's default 64 KiB would be 1.3 s of bufferbloat).
    const relay = await startNetem(ctx.server.mediaAddr, ['--down-queue', '15000']);
    try {
      const alice = await ctx.page('chromium', 'r1', 'alice', { role: 'host', simulcast: 1, publish: 'camera' });
      const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none', relay: relay.addr });
      const high = await ctx.waitStats(sub, (_, v) => v.frameWidth >= 1280, 30_000, 'the high layer before the cap').catch(async (e) => {
        // Once in a full run the publisher sent its top layer only 30 s in: say why it held it
        // back (Chromium's own qualityLimitationReason: bandwidth, cpu) next time.
        throw new Error(`${e.message}\npublisher's layers: ${JSON.stringify((await ctx.stats(alice)).outbound.video)}`);
      });
      ctx.details = { highWidth: inboundTotals(high, 'video').frameWidth };
      const CAP_AT_S = 3;
      const CAP_S = 10;
      const AFTER_S = 8;
      // The page samples what it decodes every 100 ms (Date.now() on the same machine as ours).
      const sampling = sub.evaluate(async (ms) => {
        const out = [];
        const end = Date.now() + ms;
        while (Date.now() < end) {
          const s = await window.sluice.room.stats();
          let frames = 0;
          let width = 0;
          let freezeMs = 0;
          for (const r of s.subscriber ?? []) {
            if (r.type !== 'inbound-rtp' || r.kind !== 'video') continue;
            frames += r.framesDecoded ?? 0;
            width = Math.max(width, r.frameWidth ?? 0);
            freezeMs += Math.round((r.totalFreezesDuration ?? 0) * 1000);
          }
          out.push({ t: Date.now(), frames, width, freezeMs });
          await new Promise((ok) => setTimeout(ok, 100));
        }
        return out;
      }, (CAP_AT_S + CAP_S + AFTER_S) * 1000);
      const sfu = [];
      const poll = async (until) => {
        while (Date.now() < until) {
          const r = await ctx.server.api('GET', '/api/rooms/r1/stats?identity=bob');
          const sess = r.body?.participants?.[0]?.sessions?.find((x) => x.pc === 'subscriber');
          const video = sess?.subscriptions?.find((x) => x.kind === 'video');
          if (sess) sfu.push({ t: Date.now(), estimate: sess.estimate_bps, source: sess.estimate_source, allocated: video?.allocated_layer, current: video?.current_layer, probes: sess.probe_packets, layerBps: video?.layer_bps });
          await sleep(250);
        }
      };
      const t0 = Date.now();
      const capAt = t0 + CAP_AT_S * 1000;
      const releaseAt = capAt + CAP_S * 1000;
      const polling = poll(releaseAt + AFTER_S * 1000);
      await sleep(capAt - Date.now());
      relay.send('set down rate 400k');
      await sleep(releaseAt - Date.now());
      relay.send('set down rate off');
      const samples = await sampling;
      await polling;

      // The timeline, one line per half second.
      const rel = (t, from) => ((t - from) / 1000).toFixed(1);
      const lines = [];
      for (let t = t0; t <= releaseAt + AFTER_S * 1000; t += 500) {
        const p = [...samples].reverse().find((x) => x.t <= t);
        const prev = [...samples].reverse().find((x) => x.t <= t - 500);
        const q = [...sfu].reverse().find((x) => x.t <= t);
        const phase = t < capAt ? 'free' : t < releaseAt ? 'CAP ' : 'free';
        lines.push(`${rel(t, capAt).padStart(6)} s ${phase} width ${String(p?.width ?? '-').padStart(4)} fps ${String(p && prev ? (p.frames - prev.frames) * 2 : '-').padStart(3)} | SFU estimate ${q ? `${Math.round(q.estimate / 1000)}k`.padStart(6) : '     -'} ${q?.source ?? '-'} allocated ${q?.allocated ?? '-'} forwarded ${q?.current ?? '-'} probes ${q?.probes ?? '-'}`);
      }
      const layerKbps = (sfu.find((x) => x.t >= capAt - 1000)?.layerBps ?? []).map((b) => Math.round(b / 1000));
      console.log(`downlink_cap timeline (t = 0: downlink capped at 400 kbit/s; freed at ${CAP_S} s; the publisher's layers measured by the SFU just before the cap: ${layerKbps.join(' / ')} kbit/s):\n${lines.join('\n')}`);
      ctx.details.layerKbps = layerKbps;

      // Low layer within 2 s of the cap; high layer within 5 s of the release.
      const lowAt = samples.find((x) => x.t >= capAt && x.width > 0 && x.width <= 320)?.t;
      const highAt = samples.find((x) => x.t >= releaseAt && x.width >= 1280)?.t;
      // Longest time without a new decoded frame, over the whole window.
      let longest = 0;
      let last = samples[0];
      for (const x of samples) {
        if (x.frames > last.frames) {
          longest = Math.max(longest, x.t - last.t);
          last = x;
        }
      }
      longest = Math.max(longest, samples[samples.length - 1].t - last.t);
      const chromeFreezeMs = samples[samples.length - 1].freezeMs - samples[0].freezeMs;
      Object.assign(ctx.details, {
        lowLayerAfterCapS: lowAt ? Number(rel(lowAt, capAt)) : null,
        highLayerAfterReleaseS: highAt ? Number(rel(highAt, releaseAt)) : null,
        longestFreezeMs: longest,
        chromeFreezeMs,
        probes: sfu.at(-1)?.probes,
      });
      // The aggregates in /metrics (low cardinality: no per-session labels).
      const metrics = await fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
      const metric = (name) => Number(metrics.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ').pop() ?? NaN);
      ctx.details.metrics = {
        probePackets: metric('sluice_probe_packets_total'),
        notCurrentLayerDrops: metric('sluice_forwarder_dropped_total{reason="not_current_layer"}'),
        pausedSubscriptions: metric('sluice_bwe_paused_subscriptions'),
      };
      check(ctx.details.metrics.probePackets > 0, `sluice_probe_packets_total ${ctx.details.metrics.probePackets}`);
      check(ctx.details.metrics.pausedSubscriptions === 0, `sluice_bwe_paused_subscriptions ${ctx.details.metrics.pausedSubscriptions} (pausing is off by default)`);
      check(lowAt !== undefined && lowAt - capAt <= 2000, `low layer (width <= 320) ${lowAt ? `${rel(lowAt, capAt)} s` : 'never'} after the cap (want <= 2 s)`);
      check(longest <= 1000, `video froze for ${longest} ms (want <= 1000)`);
      check(highAt !== undefined && highAt - releaseAt <= 5000, `high layer ${highAt ? `${rel(highAt, releaseAt)} s` : 'never'} after the release (want <= 5 s)`);
    } finally {
      ctx.details.relay = (await relay.stop()).trim().split('\n').pop();
    }
  },

  /** The subscriber's path pauses for 5 s: ICE restart, media resumes. */
  async ice_restart(ctx) {
    const relay = await startNetem(ctx.server.mediaAddr);
    try {
      await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
      const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none', relay: relay.addr });
      await firstFrames(ctx, sub);
      ctx.details = {};
      await pageContinuity(ctx, sub, 'before the path pauses', FPS.chromium, 5);
      relay.send('pause up');
      relay.send('pause down');
      await sleep(5000);
      const paused = inboundTotals(await ctx.stats(sub), 'video').framesDecoded;
      relay.send('resume up');
      relay.send('resume down');
      const s = await ctx.waitStats(sub, (sum, v) => sum.iceRestarts >= 1 && v.framesDecoded >= paused + 1, 20_000, 'ICE restart and new frames');
      // After the restart the video is continuous again.
      await pageContinuity(ctx, sub, 'after the ICE restart', FPS.chromium, 8);
      Object.assign(ctx.details, { iceRestarts: s.iceRestarts, framesAtPause: paused });
    } finally {
      await relay.stop();
    }
  },

  /**
   * A node whose dataplane is still starting (or being restarted): joining needs no dataplane,
   * the publisher's offer does and is refused `unavailable` (HTTP's 503 + Retry-After) until
   * the dataplane is there. sluice.js sends the same offer again every second (D118); before, the
   * publish failed and alice's page stayed without media. alice joins and publishes while the
   * dataplane waits 8 s to start; bob joins once it serves and must decode her video,
   * continuously, over 10 s.
   */
  publish_while_the_dataplane_starts: Object.assign(
    async (ctx) => {
      const readyz = () => fetch(`${ctx.server.origin}/readyz`).then((r) => r.status, () => 0);
      await ctx.browser('chromium'); // launched first: the page's offer must meet no dataplane
      check((await readyz()) === 503, 'the dataplane was already up: nothing to retry');
      const t0 = Date.now();
      let up = null;
      const watching = (async () => {
        while (up === null && Date.now() - t0 < 30_000 && !ctx.server.exited) {
          if ((await readyz()) === 200) up = Date.now() - t0;
          else await sleep(50);
        }
      })();
      await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
      const published = Date.now() - t0;
      await watching;
      check(up !== null, 'no dataplane within 30 s');
      check(published >= up, `alice's publish finished ${published} ms after she opened, before the dataplane served (${up} ms)`);
      const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
      await ctx.waitDecoded(sub, { frames: 30, audio: 0 });
      console.log(`publish_while_the_dataplane_starts: alice opened with no dataplane; it served after ${up} ms, her publish was done after ${published} ms; bob decodes her video`);
      const c = assertContinuity('bob, alice published while the dataplane started', fromSamples(await samplePage(sub, { seconds: 10 })), { senderFps: FPS.chromium, minWindowS: 9 });
      ctx.details = { dataplaneUpMs: up, publishedMs: published, continuity: c };
    },
    { serverOptions: () => ({ dataplaneDelayMs: 8000 }) },
  ),

  /**
   * Issue 14: the dataplane dies mid-call (SIGKILL: what a shard panic amounts to, the process
   * ends); `sluice up` starts a new one, the control daemon sends `reconnect`, and both pages
   * open fresh PeerConnections (sluice.js). Prints the time from the kill to bob decoding video
   * again (target < 3 s), then asserts continuity over the 10 s after that.
   */
  async dataplane_crash(ctx) {
    await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
    await ctx.waitDecoded(sub, { frames: 30, audio: 0 });
    await sub.evaluate(() => {
      window.reconnects = 0;
      window.sluice.room.on('reconnect', () => { window.reconnects += 1; });
    });
    const config = join(ctx.server.dir, 'sluice.toml');
    const t0 = Date.now();
    const killed = spawnSync('pkill', ['-KILL', '-f', `sluice-dataplane --config ${config}`]);
    check(killed.status === 0, `no dataplane process to kill (pkill exit ${killed.status})`);
    let told = null;
    let back = null;
    while (Date.now() - t0 < 15_000) {
      const n = await sub.evaluate(() => window.reconnects);
      if (n > 0 && told === null) told = Date.now() - t0;
      if (n > 0 && inboundTotals(await ctx.stats(sub), 'video').framesDecoded > 0) {
        back = Date.now() - t0;
        break;
      }
      await sleep(50);
    }
    check(told !== null, 'bob was never told to reconnect within 15 s');
    check(back !== null, `bob decoded no video within 15 s of the kill (told to reconnect after ${told} ms)`);
    console.log(`dataplane_crash: SIGKILL -> reconnect told after ${told} ms, video decoded again after ${back} ms (target < 3000 ms)`);
    const c = assertContinuity('bob after the dataplane restart', fromSamples(await samplePage(sub, { seconds: 10 })), { senderFps: 20, minWindowS: 9 });
    ctx.details = { reconnectMs: told, mediaBackMs: back, continuity: c };
    check(back < 3000, `video back after ${back} ms (target < 3000 ms)`);
  },

  /**
   * The README's demo, as a user gets it: two pages open `/` itself and join one room by name
   * (`?room=&identity=&role=&auto=1`: the page fetches its own token from /dev/token), both
   * publish camera+mic, and each decodes the OTHER's video (its receiver's getStats).
   */
  async two_way_video(ctx) {
    const open = (identity, role) => {
      const q = new URLSearchParams({ room: 'demo', identity, role, auto: '1' });
      return ctx.openPage('chromium', `${ctx.server.origin}/?${q}`, identity);
    };
    const alice = await open('alice', 'host');
    const bob = await open('bob', 'controller');
    const FRAMES = 40;
    const PACKETS = 100;
    const fromOther = async (page, other) => {
      const end = Date.now() + 20_000;
      for (;;) {
        const got = await page.evaluate(async (otherIdentity) => {
          const room = window.sluice.room;
          const out = { video: null, audio: null };
          for (const s of room.subscriptions.values()) {
            if (room.participants.get(s.participantSid)?.identity !== otherIdentity) continue;
            (await s.receiver.getStats()).forEach((r) => {
              if (r.type === 'inbound-rtp') out[r.kind] = { framesDecoded: r.framesDecoded ?? 0, packetsReceived: r.packetsReceived ?? 0, frameWidth: r.frameWidth ?? 0 };
            });
          }
          return out;
        }, other);
        if (got.video && got.video.framesDecoded > FRAMES && got.video.packetsReceived > PACKETS && got.audio?.packetsReceived > 0) return got;
        if (Date.now() > end) {
          throw new Error(`${page.identity}: ${other}'s media not decoded within 20 s: ${JSON.stringify(got)}\npage log:\n${
            (await page.evaluate(() => window.sluice.log.slice(-12).join('\n')))}`);
        }
        await sleep(500);
      }
    };
    const [atAlice, atBob] = await Promise.all([fromOther(alice, 'bob'), fromOther(bob, 'alice')]);
    ctx.details = { aliceDecodesBob: atAlice.video, bobDecodesAlice: atBob.video, audioPackets: [atAlice.audio.packetsReceived, atBob.audio.packetsReceived] };
    // Each page receives one video track (the other's): both continuous for 10 s.
    const [ta, tb] = await Promise.all([samplePage(alice, { seconds: 10 }), samplePage(bob, { seconds: 10 })]);
    for (const [label, t] of [['bob → alice', ta], ['alice → bob', tb]]) {
      const c = fromSamples(t);
      keep(ctx, () => assertContinuity(label, c, { senderFps: FPS.chromium, minWindowS: 9 }), label, c, FPS.chromium);
    }
  },

  /** Two pages with a shared key decode each other; a third without it decodes nothing. */
  async e2ee_passthrough(ctx) {
    const key = 'sluice-e2e-shared-key';
    const a = await ctx.page('chromium', 'r1', 'alice', { role: 'host', e2ee: key });
    const b = await ctx.page('chromium', 'r1', 'bob', { role: 'controller', e2ee: key });
    const c = await ctx.page('chromium', 'r1', 'eve', { role: 'viewer', publish: 'none' });
    await firstFrames(ctx, a);
    await firstFrames(ctx, b);
    ctx.details = {};
    // The key holders decode each other continuously (the SFU forwards the encrypted frames).
    const [ta, tb] = await Promise.all([samplePage(a, { seconds: 8 }), samplePage(b, { seconds: 8 })]);
    for (const [label, t] of [['e2ee bob → alice', ta], ['e2ee alice → bob', tb]]) {
      const c = fromSamples(t);
      keep(ctx, () => assertContinuity(label, c, { senderFps: FPS.chromium, minWindowS: 7 }), label, c, FPS.chromium);
    }
    const sa = await ctx.stats(a);
    const sb = await ctx.stats(b);
    const sc = await ctx.waitStats(c, (_, v) => v.streams >= 2 && v.packetsReceived >= 200, 20_000, 'packets at the keyless page');
    await sleep(3000);
    const sc2 = await ctx.stats(c);
    const vc = inboundTotals(sc2, 'video');
    check(vc.framesDecoded === 0, `the page without the key decoded ${vc.framesDecoded} frames`);
    Object.assign(ctx.details, {
      aDecoded: inboundTotals(sa, 'video').framesDecoded,
      bDecoded: inboundTotals(sb, 'video').framesDecoded,
      keylessPackets: vc.packetsReceived,
      keylessDecoded: vc.framesDecoded,
      keylessSeen: inboundTotals(sc, 'video').packetsReceived,
      e2ee: sa.e2ee,
    });
  },

  /** Issue 8: auto room P2P with 2 pages, hard-cut migration to SFU at the 3rd, back at 2. */
  async hybrid_hard_cut(ctx) {
    await hybridMigration(ctx, 'hard_cut');
  },

  /** Issue 8: the same with the gradual strategy (P2P kept until SFU audio plays). */
  async hybrid_gradual(ctx) {
    await hybridMigration(ctx, 'gradual');
  },

  /** Issue 8: the SFU side fails during the migration: fallback to P2P, audio continues. */
  async hybrid_sfu_failure(ctx) {
    await hybridSfuFailure(ctx);
  },

  // Issue 20: GStreamer as the fourth stack, H.264, ssrc-less offers, repeated connects.
  ...interopScenarios,

  // Issue 15: several nodes on one Redis.
  ...clusterScenarios,
  ...cascadeScenarios,
  ...tcpScenarios,
  ...turnScenarios,
  ...dataScenarios,
  ...inputScenarios,
};

// Its point is time targets (the low layer within 2 s of the cap, the high layer within 5 s of the
// release) on a shared 2-core machine: one more run allowed, both printed (run.mjs). Seen since
// the allocator's downgrade headroom: low layer 1.1-1.2 s, high layer 1.4-2.6 s (before it, the
// low layer took 2.4 s whenever the first decrease fitted the middle layer).
scenarios.downlink_cap.retries = 1;

// Its baseline window (before the path pauses) needs ≥ 2.5 s of continuous video; once in nine
// runs on a loaded machine the subscriber decoded a first frame and then nothing for 2.6 s, before
// any restart code acts (h/split, 2026-12-06: `srtp_replay` 4, `forward_error` 5, no second ICE
// connection). One more run allowed; the failed one is printed (run.mjs). Not seen in full runs.
scenarios.ice_restart.retries = 1;
