// The e2e scenarios (issue 5 §3). Each one gets a fresh Context (its own `sluice up`), asserts on
// what the receiver DECODED (getStats framesDecoded / packetsReceived / frameWidth, aiortc
// frames), and is bounded in time by the runner.

import { clusterScenarios } from './scenarios-cluster.mjs';
import { hybridMigration, hybridSfuFailure } from './lib/hybrid.mjs';
import { interopScenarios } from './scenarios-interop.mjs';
import { startNetem, sleep } from './lib/sluice.mjs';
import { inboundTotals, outboundTotals } from './lib/stats.mjs';

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** A publishes camera+mic from `pubEngine`; B on `subEngine` receives and decodes both. */
async function oneWay(ctx, pubEngine, subEngine) {
  const pub = await ctx.page(pubEngine, 'r1', 'alice', { role: 'host' });
  const sub = await ctx.page(subEngine, 'r1', 'bob', { role: 'viewer', publish: 'none' });
  const s = await ctx.waitDecoded(sub, { frames: 40, audio: 50 });
  const v = inboundTotals(s, 'video');
  check(v.frameWidth >= 320, `frameWidth ${v.frameWidth}`);
  const p = await ctx.stats(pub);
  ctx.recordInterop(pub, `${pubEngine} publishes`, p, 'publisher');
  ctx.recordInterop(sub, `${subEngine} subscribes (from ${pubEngine})`, s, 'subscriber');
  ctx.details = { framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, audioPackets: inboundTotals(s, 'audio').packetsReceived, codec: v.codec };
}

export const scenarios = {
  async chromium_to_chromium(ctx) {
    await oneWay(ctx, 'chromium', 'chromium');
  },

  async firefox_to_chromium(ctx) {
    await oneWay(ctx, 'firefox', 'chromium');
  },

  async chromium_to_firefox(ctx) {
    await oneWay(ctx, 'chromium', 'firefox');
  },

  /** aiortc publishes over WHIP; a Chromium page in the room decodes it. */
  async aiortc_to_chromium(ctx) {
    const token = await ctx.server.token('r1', 'aio', 'host');
    const publishing = ctx.aiortc(['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', token, '--seconds', '14'], 30_000);
    const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
    const s = await ctx.waitDecoded(sub, { frames: 40, audio: 0, ms: 15_000 });
    const pub = await publishing;
    ctx.recordInterop(sub, 'chromium subscribes (from aiortc WHIP)', s, 'subscriber');
    ctx.interop.push({ engine: `aiortc ${pub.version}`, direction: 'aiortc publishes (WHIP)', codecs: pub.codecs, tlsVersion: pub.tls ?? null, dtlsCipher: pub.cipher ?? null, srtpCipher: pub.srtp ?? null });
    const v = inboundTotals(s, 'video');
    ctx.details = { framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, codec: v.codec };
  },

  /** A Chromium page publishes; aiortc plays the room over WHEP and decodes frames. */
  async chromium_to_aiortc(ctx) {
    const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const token = await ctx.server.token('r1', 'aio', 'viewer');
    const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', '8'], 30_000);
    check(play.video_frames >= 40, `aiortc decoded ${play.video_frames} video frames`);
    ctx.recordInterop(pub, 'chromium publishes (to aiortc WHEP)', await ctx.stats(pub), 'publisher');
    ctx.interop.push({ engine: `aiortc ${play.version}`, direction: 'aiortc subscribes (WHEP)', codecs: play.codecs, tlsVersion: play.tls ?? null, dtlsCipher: play.cipher ?? null, srtpCipher: play.srtp ?? null });
    ctx.details = play;
  },

  /** WHIP publish and WHEP play, both from scripts (aiortc), no browser. */
  async whip_whep(ctx) {
    const pubToken = await ctx.server.token('r1', 'whip', 'host');
    const publishing = ctx.aiortc(['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', pubToken, '--seconds', '12'], 30_000);
    await sleep(2500);
    const subToken = await ctx.server.token('r1', 'whep', 'viewer');
    const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', subToken, '--seconds', '6'], 30_000);
    const published = await publishing;
    // RFC 9725 §4.1/§4.2: 201 with a Location the session is ended with (DELETE).
    for (const [r, kind] of [[published, 'whip'], [play, 'whep']]) {
      check(new RegExp(`/${kind}/r1/[^/]+$`).test(r.resource ?? ''), `${kind} Location ${r.resource}`);
      check(r.delete_status === 200, `${kind} DELETE answered ${r.delete_status}`);
    }
    check(play.video_frames >= 30, `WHEP decoded ${play.video_frames} video frames`);
    check(play.audio_frames >= 30, `WHEP decoded ${play.audio_frames} audio frames`);
    ctx.details = play;
  },

  /** Three layers published; the subscriber asks for low, then high; frameWidth follows. */
  async simulcast(ctx) {
    const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host', simulcast: 1, publish: 'camera' });
    const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none', layer: 0 });
    const low = await ctx.waitStats(sub, (_, v) => v.framesDecoded >= 30 && v.frameWidth > 0 && v.frameWidth <= 320, 20_000, 'low layer (width <= 320)');
    const lowWidth = inboundTotals(low, 'video').frameWidth;
    const sid = await sub.evaluate(() => [...window.sluice.room.subscriptions.values()].find((s) => s.track.kind === 'video').trackSid);
    await sub.evaluate((trackSid) => window.sluice.room.setLayer(trackSid, 2), sid);
    const high = await ctx.waitStats(sub, (_, v) => v.frameWidth >= 640, 25_000, 'high layer (width >= 640)');
    const layers = outboundTotals(await ctx.stats(pub), 'video').streams;
    ctx.details = { lowWidth, highWidth: inboundTotals(high, 'video').frameWidth, publishedLayers: layers };
  },

  /** The host shares a screen (Chromium's fake display); a viewer receives it. */
  async screen_share(ctx) {
    await ctx.page('chromium', 'r1', 'host', { role: 'host', publish: 'screen' });
    const viewer = await ctx.page('chromium', 'r1', 'viewer', { role: 'viewer', publish: 'none' });
    const s = await ctx.waitDecoded(viewer, { frames: 30, audio: 0 });
    const sources = await viewer.evaluate(() => Object.values(window.sluice.tracks).map((t) => t.source));
    check(sources.includes('screen'), `viewer's tracks have sources ${JSON.stringify(sources)}`);
    ctx.details = { framesDecoded: inboundTotals(s, 'video').framesDecoded, frameWidth: inboundTotals(s, 'video').frameWidth, sources };
  },

  /** One publisher, N subscriber pages (N=4 on 2 cores), every one decodes. */
  async fanout(ctx) {
    const n = Number(process.env.SLUICE_E2E_FANOUT ?? 4);
    await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const subs = [];
    for (let i = 0; i < n; i++) subs.push(await ctx.page('chromium', 'r1', `viewer${i}`, { role: 'viewer', publish: 'none' }));
    const results = await Promise.all(subs.map((p) => ctx.waitDecoded(p, { frames: 30, audio: 30, ms: 30_000 })));
    ctx.details = { subscribers: n, framesDecoded: results.map((s) => inboundTotals(s, 'video').framesDecoded) };
  },

  /** 10% loss on the publisher's uplink: the server NACKs (nackCount > 0), video keeps decoding. */
  async loss_10pct(ctx) {
    const relay = await startNetem(ctx.server.mediaAddr, ['--loss', '0.1']);
    try {
      const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host', relay: relay.addr });
      const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
      const first = await ctx.waitDecoded(sub, { frames: 30, audio: 0, ms: 20_000 });
      await sleep(8000);
      const later = await ctx.stats(sub);
      const v0 = inboundTotals(first, 'video');
      const v1 = inboundTotals(later, 'video');
      const out = outboundTotals(await ctx.stats(pub), 'video');
      check(out.nackCount > 0, `publisher nackCount ${out.nackCount} (the server never NACKed)`);
      check(v1.framesDecoded - v0.framesDecoded >= 60, `only ${v1.framesDecoded - v0.framesDecoded} frames decoded in 8 s under loss`);
      ctx.details = { nackCount: out.nackCount, framesIn8s: v1.framesDecoded - v0.framesDecoded, freezes: v1.freezes };
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
      await ctx.waitDecoded(sub, { frames: 30, audio: 0 });
      relay.send('pause up');
      relay.send('pause down');
      await sleep(5000);
      const paused = inboundTotals(await ctx.stats(sub), 'video').framesDecoded;
      relay.send('resume up');
      relay.send('resume down');
      const s = await ctx.waitStats(sub, (sum, v) => sum.iceRestarts >= 1 && v.framesDecoded >= paused + 40, 20_000, 'ICE restart and 40 more frames');
      ctx.details = { iceRestarts: s.iceRestarts, framesAtPause: paused, framesAfter: inboundTotals(s, 'video').framesDecoded };
    } finally {
      await relay.stop();
    }
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
  },

  /** Two pages with a shared key decode each other; a third without it decodes nothing. */
  async e2ee_passthrough(ctx) {
    const key = 'sluice-e2e-shared-key';
    const a = await ctx.page('chromium', 'r1', 'alice', { role: 'host', e2ee: key });
    const b = await ctx.page('chromium', 'r1', 'bob', { role: 'controller', e2ee: key });
    const c = await ctx.page('chromium', 'r1', 'eve', { role: 'viewer', publish: 'none' });
    const sa = await ctx.waitDecoded(a, { frames: 30, audio: 0 });
    const sb = await ctx.waitDecoded(b, { frames: 30, audio: 0 });
    const sc = await ctx.waitStats(c, (_, v) => v.streams >= 2 && v.packetsReceived >= 200, 20_000, 'packets at the keyless page');
    await sleep(3000);
    const sc2 = await ctx.stats(c);
    const vc = inboundTotals(sc2, 'video');
    check(vc.framesDecoded === 0, `the page without the key decoded ${vc.framesDecoded} frames`);
    ctx.details = {
      aDecoded: inboundTotals(sa, 'video').framesDecoded,
      bDecoded: inboundTotals(sb, 'video').framesDecoded,
      keylessPackets: vc.packetsReceived,
      keylessDecoded: vc.framesDecoded,
      keylessSeen: inboundTotals(sc, 'video').packetsReceived,
      e2ee: sa.e2ee,
    };
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
};
