// Issue 20: GStreamer's webrtcbin as the fourth stack (WHIP publisher with VP8, H.264 and Opus, with
// and without a=ssrc, its default RSA certificate; WHEP player), H.264 end to end, and the
// connect-and-decode check repeated 10 times in a row per stack against `sluice up`'s default
// worker layout (one per core), so a fault that depends on the shard a client lands on shows.
//
// webrtcbin keeps its default DTLS certificate, RSA-2048, which Sluice's own DTLS 1.2 server
// accepts (docs/decisions.md D24); every scenario here runs the stock build and checks the
// certificate type. `gst_wrong_fingerprint_refused` checks a refusal: an alert, a log line, a
// metric.

import { spawn, execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

import { assertContinuity, fromFrameTimes, fromSamples as fromSamplesOf, samplePage } from './lib/continuity.mjs';
import { sleep } from './lib/sluice.mjs';
import { inboundTotals } from './lib/stats.mjs';

const E2E = resolve(new URL('.', import.meta.url).pathname);
const GST_PYTHON = process.env.SLUICE_E2E_GST_PYTHON ?? '/usr/bin/python3';
const WINDOW_S = 20;
const REPEATS = Number(process.env.SLUICE_E2E_REPEATS ?? 10);

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Runs gst_client.py; resolves `{code, result}` (its JSON line) whatever the exit code. */
function gst(ctx, args, ms) {
  return new Promise((ok) => {
    const child = spawn(GST_PYTHON, [resolve(E2E, 'gst_client.py'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    ctx.children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      let result;
      try {
        result = JSON.parse(out.trim().split('\n').pop());
      } catch {
        // Never a rejection: a killed client (scenario over) must not crash the runner.
        result = { error: `gst_client exited ${code} without a result: ${out.slice(-300)}` };
      }
      ok({ code: code ?? -1, result, stderr: err.slice(-1500) });
    });
  });
}

async function gstOk(ctx, args, ms) {
  const r = await gst(ctx, args, ms);
  if (r.code !== 0) throw new Error(`gst_client ${args[0]} failed: ${JSON.stringify(r.result).slice(0, 1500)}\n${r.stderr}`);
  return r.result;
}

function metric(text, name) {
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

async function metrics(ctx) {
  return fetch(`${ctx.server.origin}/metrics`).then((r) => r.text());
}

/** `RSA-2048`, `ECDSA P-256`… of a DER certificate given in base64 (getStats `certificate`). */
function certType(base64) {
  if (!base64) return null;
  try {
    const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], { input: Buffer.from(base64, 'base64') }).toString();
    if (text.includes('rsaEncryption')) return `RSA-${(text.match(/Public-Key: \((\d+) bit\)/) ?? [])[1] ?? '?'}`;
    if (text.includes('id-ecPublicKey')) return `ECDSA ${(text.match(/NIST CURVE: (\S+)/) ?? [])[1] ?? '?'}`;
    return 'other';
  } catch {
    return null;
  }
}

/** The page's local certificate type and the feedback its descriptions negotiated. */
async function pageFacts(page) {
  const facts = await page.evaluate(async () => {
    const out = { certs: [], sdp: '' };
    const room = window.sluice.room;
    for (const pc of [room.publisher, room.subscriber, room.pub, room.sub, ...(room.pcs ?? [])].filter(Boolean)) {
      const pcObj = pc.pc ?? pc;
      if (!pcObj.getStats) continue;
      (await pcObj.getStats()).forEach((r) => {
        if (r.type === 'certificate') out.certs.push(r.base64Certificate);
      });
      out.sdp += `${pcObj.localDescription?.sdp ?? ''}\n${pcObj.remoteDescription?.sdp ?? ''}`;
    }
    return out;
  }).catch(() => ({ certs: [], sdp: '' }));
  return { certTypes: [...new Set(facts.certs.map(certType).filter(Boolean))], feedback: feedbackOf(facts.sdp) };
}

/** transport-cc / REMB / RR only, from what a description pair negotiated. */
function feedbackOf(sdp) {
  if (!sdp) return null;
  const fb = [];
  if (/a=rtcp-fb:\S+ transport-cc/.test(sdp) && /transport-wide-cc/.test(sdp)) fb.push('transport-cc');
  if (/a=rtcp-fb:\S+ goog-remb/.test(sdp)) fb.push('REMB');
  return fb.length ? fb.join(' + ') : 'RR only';
}

function gstRow(r, direction) {
  return {
    engine: `gstreamer ${r.gstreamer.replace('GStreamer ', '')}`,
    direction,
    codecs: r.mode === 'whip' ? `video/${r.video.toUpperCase()} + audio/opus` : `video/${r.codecs.video} + audio/${(r.codecs.audio ?? '').toLowerCase()}`,
    tlsVersion: r.dtls_version,
    dtlsCipher: null,
    srtpCipher: r.srtp ?? null,
    certificate: r.cert,
    ssrcLess: r.mode === 'whip' ? !r.signalled_ssrc : null,
    feedback: r.answer_extmaps?.includes('transport-wide-cc') ? 'transport-cc' : (r.answer_rtcp_fb ?? []).includes('goog-remb') ? 'REMB' : 'RR only (+ NACK, PLI)',
  };
}

/** A GStreamer WHIP publisher runs for `seconds`; resolves its result. */
function gstPublish(ctx, video, { ssrc = true, seconds = WINDOW_S + 10 } = {}) {
  const p = (async () => {
    const token = await ctx.server.token('r1', `gst-${video}`, 'host');
    const args = ['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', token, '--video', video, '--seconds', String(seconds)];
    if (ssrc) args.push('--ssrc');
    return gstOk(ctx, args, (seconds + 30) * 1000);
  })();
  // Awaited later; a scenario that fails first must not leave it an unhandled rejection.
  p.catch(() => {});
  return p;
}

/** A Chromium viewer decodes `video` from GStreamer through a 20 s continuity window. */
async function gstToChromium(ctx, video, ssrc) {
  const publishing = gstPublish(ctx, video, { ssrc });
  const sub = await ctx.page('chromium', 'r1', 'bob', { role: 'viewer', publish: 'none' });
  await ctx.waitDecoded(sub, { frames: 10, audio: 0, ms: 20_000 });
  const c = assertContinuity(`chromium decodes GStreamer ${video}`, fromSamplesOf(await samplePage(sub, { seconds: WINDOW_S })), {
    senderFps: 30,
    minWindowS: WINDOW_S - 1,
  });
  const s = await ctx.stats(sub);
  const pub = await publishing;
  check(pub.cert === 'RSA-2048', `webrtcbin's certificate is ${pub.cert}, not RSA-2048`);
  const m = await metrics(ctx);
  ctx.recordInterop(sub, `chromium subscribes (from GStreamer ${video})`, s, 'subscriber');
  ctx.interop.push(gstRow(pub, `gstreamer publishes ${video} (WHIP${ssrc ? '' : ', no a=ssrc'})`));
  ctx.details = { continuity: c, codec: inboundTotals(s, 'video').codec, gst: summary(pub), unsignaledBound: metric(m, 'sluice_unsignaled_ssrc_bound_total') };
  return { pub, sub: s };
}

function summary(r) {
  const { video_times_ms: _t, ...rest } = r;
  return rest;
}

export const interopScenarios = {
  /**
   * A client whose certificate is not the one its offer's a=fingerprint names is refused: the
   * DTLS 1.2 server sends a fatal bad_certificate alert before its Finished, logs the reason once
   * and counts it. webrtcbin's offer gets one byte of its fingerprint changed.
   */
  async gst_wrong_fingerprint_refused(ctx) {
    const token = await ctx.server.token('r1', 'gst', 'host');
    const t0 = Date.now();
    const r = await gst(ctx, ['whip', '--url', `${ctx.server.origin}/whip/r1`, '--token', token, '--video', 'vp8', '--seconds', '3', '--bad-fingerprint'], 40_000);
    const ms = Date.now() - t0;
    check(r.code !== 0, `GStreamer with a wrong fingerprint connected: ${JSON.stringify(summary(r.result))}`);
    check(r.result.cert === 'RSA-2048', `webrtcbin's certificate is ${r.result.cert}, not RSA-2048`);
    let logged = [];
    for (let i = 0; i < 40 && !logged.length; i++) {
      logged = ctx.server.logs.filter((l) => l.includes('DTLS handshake failed'));
      if (!logged.length) await sleep(250);
    }
    check(logged.length === 1, `expected one "DTLS handshake failed" line, got ${logged.length}`);
    check(logged[0].includes('peer certificate does not match the SDP fingerprint'), `reason: ${logged[0]}`);
    // The counter reaches /metrics with the workers' next stats snapshot: poll for it.
    let failed = 0;
    for (let i = 0; i < 40; i++) {
      failed = metric(await metrics(ctx), 'sluice_dtls_handshakes_failed_total');
      if (failed >= 1) break;
      await sleep(250);
    }
    check(failed >= 1, `sluice_dtls_handshakes_failed_total ${failed}`);
    ctx.details = { clientError: r.result.error, clientDtlsState: r.result.dtls_state, seconds: ms / 1000, dtlsFailedTotal: failed, log: logged[0].replace(/\x1b\[[0-9;]*m/g, '').slice(-120) };
  },

  /** GStreamer publishes VP8 + Opus with a=ssrc (RSA certificate); Chromium decodes 20 s. */
  async gst_vp8_to_chromium(ctx) {
    await gstToChromium(ctx, 'vp8', true);
  },

  /** GStreamer publishes H.264 + Opus with a=ssrc; Debian's Chromium decodes it 20 s. */
  async gst_h264_to_chromium(ctx) {
    const { sub } = await gstToChromium(ctx, 'h264', true);
    check(/H264/i.test(inboundTotals(sub, 'video').codec ?? ''), `Chromium decoded ${inboundTotals(sub, 'video').codec}`);
  },

  /**
   * GStreamer publishes H.264 without a=ssrc (its SSRCs are bound by payload type); aiortc plays
   * over WHEP with its default offer, VP8 listed first, and must get the H.264 track.
   */
  async gst_h264_nossrc_to_aiortc(ctx) {
    await gstH264ToAiortc(ctx, { ssrc: false });
  },

  /**
   * The same with a=ssrc signalled: only the WHEP codec choice is at stake (issue 20's third
   * defect on its own: the viewer listing VP8 first got no track).
   */
  async gst_h264_to_aiortc(ctx) {
    await gstH264ToAiortc(ctx, { ssrc: true });
  },

  /** GStreamer publishes VP8 without a=ssrc; GStreamer plays it over WHEP (20 s continuity). */
  async gst_vp8_nossrc_to_gst_whep(ctx) {
    const publishing = gstPublish(ctx, 'vp8', { ssrc: false, seconds: WINDOW_S + 14 });
    await sleep(3000);
    const token = await ctx.server.token('r1', 'gst-player', 'viewer');
    const play = await gstOk(ctx, ['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', String(WINDOW_S + 2)], (WINDOW_S + 40) * 1000);
    const c = assertContinuity('GStreamer WHEP decodes GStreamer VP8 (no a=ssrc)', fromFrameTimes(play.video_times_ms), { senderFps: 30, minWindowS: WINDOW_S });
    check(play.audio_frames > 0, `GStreamer WHEP decoded ${play.audio_frames} audio frames`);
    const pub = await publishing;
    ctx.interop.push(gstRow(pub, 'gstreamer publishes vp8 (WHIP, no a=ssrc)'));
    ctx.interop.push(gstRow(play, 'gstreamer plays (WHEP)'));
    ctx.details = { continuity: c, audioFrames: play.audio_frames, player: summary(play) };
  },

  /** Chromium publishes (fake camera, 20 fps); GStreamer plays over WHEP for 20 s. */
  async chromium_to_gst_whep(ctx) {
    const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
    const token = await ctx.server.token('r1', 'gst-player', 'viewer');
    const play = await gstOk(ctx, ['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', String(WINDOW_S + 2)], (WINDOW_S + 40) * 1000);
    const c = assertContinuity('GStreamer WHEP decodes Chromium', fromFrameTimes(play.video_times_ms), { senderFps: 20, minWindowS: WINDOW_S });
    ctx.recordInterop(pub, 'chromium publishes (to GStreamer WHEP)', await ctx.stats(pub), 'publisher');
    ctx.interop.push(gstRow(play, 'gstreamer plays (WHEP, from chromium)'));
    ctx.details = { continuity: c, codecs: play.codecs, chromium: await pageFacts(pub) };
  },

  /** The connect-and-decode check, REPEATS times in a row per stack (one scenario per stack). */
  async repeat_chromium(ctx) {
    await repeatViewers(ctx, 'chromium');
  },
  async repeat_firefox(ctx) {
    await repeatViewers(ctx, 'firefox');
  },
  async repeat_aiortc(ctx) {
    await repeatViewers(ctx, 'aiortc');
  },
  async repeat_gstreamer(ctx) {
    await repeatViewers(ctx, 'gstreamer');
  },
};

/** GStreamer H.264 + Opus over WHIP (with or without a=ssrc) → aiortc over WHEP, VP8 listed first. */
async function gstH264ToAiortc(ctx, { ssrc }) {
  const what = ssrc ? 'with a=ssrc' : 'no a=ssrc';
  const publishing = gstPublish(ctx, 'h264', { ssrc, seconds: WINDOW_S + 14 });
  await sleep(3000);
  const token = await ctx.server.token('r1', 'aio', 'viewer');
  const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', String(WINDOW_S + 3)], (WINDOW_S + 40) * 1000);
  check(/H264/i.test(play.codecs ?? ''), `aiortc negotiated ${play.codecs}`);
  const c = assertContinuity(`aiortc decodes GStreamer H.264 (${what})`, fromFrameTimes(play.video_times_ms), { senderFps: 30, minWindowS: WINDOW_S });
  const pub = await publishing;
  const m = await metrics(ctx);
  const bound = metric(m, 'sluice_unsignaled_ssrc_bound_total{');
  if (ssrc) {
    check(pub.offer_ssrc_lines > 0, 'the offer had no a=ssrc lines');
  } else {
    check(pub.offer_ssrc_lines === 0, `the offer had ${pub.offer_ssrc_lines} a=ssrc lines`);
    check(bound >= 2, `sluice_unsignaled_ssrc_bound_total ${bound} (video and audio should bind by payload type)`);
  }
  ctx.interop.push(gstRow(pub, `gstreamer publishes h264 (WHIP, ${what})`));
  ctx.interop.push({ engine: `aiortc ${play.version}`, direction: 'aiortc subscribes (WHEP, VP8 listed first, from GStreamer H.264)', codecs: play.codecs, tlsVersion: play.tls ?? null, dtlsCipher: play.cipher ?? null, srtpCipher: play.srtp ?? null });
  ctx.details = { continuity: c, aiortcCodecs: play.codecs, unsignaledBound: bound, gst: summary(pub) };
}

/**
 * One Chromium publisher; then REPEATS viewers of `stack` in a row, each a fresh connection (new
 * source port, so the kernel may hand it to any worker), each must decode >= 15 frames.
 */
async function repeatViewers(ctx, stack) {
  const pub = await ctx.page('chromium', 'r1', 'alice', { role: 'host' });
  const frames = [];
  const t0 = Date.now();
  let facts = null;
  for (let i = 0; i < REPEATS; i++) {
    if (stack === 'chromium' || stack === 'firefox') {
      const sub = await ctx.page(stack, 'r1', `v${i}`, { role: 'viewer', publish: 'none' });
      const s = await ctx.waitDecoded(sub, { frames: 15, audio: 0, ms: 15_000 });
      frames.push(inboundTotals(s, 'video').framesDecoded);
      if (i === 0) {
        ctx.recordInterop(sub, `${stack} subscribes (repeat)`, s, 'subscriber');
        facts = await pageFacts(sub);
      }
      await sub.close();
      ctx.pages.splice(ctx.pages.indexOf(sub), 1);
    } else if (stack === 'aiortc') {
      const token = await ctx.server.token('r1', `v${i}`, 'viewer');
      const play = await ctx.aiortc(['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token, '--seconds', '2.5'], 30_000);
      check(play.video_frames >= 15, `aiortc viewer ${i + 1}/${REPEATS} decoded ${play.video_frames} frames`);
      frames.push(play.video_frames);
    } else {
      // One process plays REPEATS times in a row (a new webrtcbin, ICE agent and socket each:
      // a new source port), each until it decoded 15 frames: the interpreter and GStreamer
      // start once, so ten connections fit the scenario limit with room to spare.
      const token = await ctx.server.token('r1', 'v', 'viewer');
      const play = await gstOk(ctx, ['whep', '--url', `${ctx.server.origin}/whep/r1`, '--token', token,
        '--repeat', String(REPEATS), '--frames', '15', '--seconds', '8'], 75_000);
      check(play.runs.length === REPEATS, `${play.runs.length}/${REPEATS} GStreamer players ran`);
      play.runs.forEach((r, j) => check(r.video_frames >= 15, `GStreamer viewer ${j + 1}/${REPEATS} decoded ${r.video_frames} frames`));
      frames.push(...play.runs.map((r) => r.video_frames));
      facts = { connectMs: play.runs.map((r) => r.connect_ms), msEach: play.runs.map((r) => r.ms), cert: play.runs[0].cert, srtp: play.runs[0].srtp };
      break;
    }
  }
  const workers = (await metrics(ctx)).split('\n').filter((l) => l.startsWith('sluice_worker_sessions{')).length;
  ctx.details = { stack, repeats: REPEATS, framesEach: frames, seconds: (Date.now() - t0) / 1000, workers, publisher: await pageFacts(pub), viewer: facts };
}
