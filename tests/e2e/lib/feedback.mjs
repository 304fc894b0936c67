// What the SFU's estimator ran on for one subscriber while a scenario's window ran (issue 12:
// which feedback each client uses). Polls GET /api/rooms/{room}/stats?identity=… once a second
// and summarizes the subscriber session: whether transport-cc feedback arrived (`acked_bps` is
// only set by it), whether a REMB ceiling was in force, what set the estimate, the estimate
// itself, what was sent and the round-trip time from receiver reports.

import { sleep } from './sluice.mjs';

const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};
const kbps = (x) => (x == null ? null : Math.round(x / 1000));

/**
 * Starts polling; `await watch.done()` stops and returns the summary:
 * `{ samples, transportCc, rembCeiling, sources, estimateKbps: {min, median, max}, sentKbps, rttMs, probes }`
 * (`transportCc` / `rembCeiling`: how many samples showed them).
 */
export function watchFeedback(server, room, identity, { everyMs = 1000 } = {}) {
  const samples = [];
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const r = await server.api('GET', `/api/rooms/${room}/stats?identity=${encodeURIComponent(identity)}`).catch(() => null);
      // A browser's subscriber PC; a WHEP player's one PC (answered as one-shot, listed as
      // `publisher`) is the session that has subscriptions.
      const sessions = r?.body?.participants?.[0]?.sessions ?? [];
      const sess = sessions.find((x) => x.pc === 'subscriber') ?? sessions.find((x) => x.subscriptions?.length > 0);
      if (sess?.connected) {
        samples.push({ estimate: sess.estimate_bps, source: sess.estimate_source, acked: sess.acked_bps, remb: sess.remb_cap_bps, sent: sess.sent_bps, rtt: sess.rtt_ms, probes: sess.probe_packets });
      }
      await sleep(everyMs);
    }
  })();
  return {
    async done() {
      stop = true;
      await loop;
      return summarizeFeedback(samples);
    },
  };
}

export function summarizeFeedback(samples) {
  const sources = {};
  for (const s of samples) sources[s.source] = (sources[s.source] ?? 0) + 1;
  const est = samples.map((s) => s.estimate);
  return {
    samples: samples.length,
    transportCc: samples.filter((s) => s.acked != null).length,
    rembCeiling: samples.filter((s) => s.remb != null).length,
    sources,
    estimateKbps: { min: kbps(Math.min(...est)), median: kbps(median(est)), max: kbps(Math.max(...est)) },
    sentKbps: kbps(median(samples.map((s) => s.sent))),
    rttMs: median(samples.map((s) => s.rtt)),
    probes: samples.at(-1)?.probes ?? 0,
  };
}

/**
 * Asserts what the estimator must have run on for this receiver: transport-cc for the browsers
 * (every forwarded copy carries our transport-wide seq, D59), none for aiortc (it sends REMB + RR
 * only); and at least `minSamples` samples, so a silent poller cannot pass.
 */
export function assertFeedback(label, f, { transportCc, minSamples = 10 }) {
  if (f.samples < minSamples) throw new Error(`${label}: ${f.samples} SFU stats samples, wanted ${minSamples}`);
  if (transportCc && f.transportCc < f.samples / 2) {
    throw new Error(`${label}: transport-cc feedback in ${f.transportCc} of ${f.samples} samples (sources ${JSON.stringify(f.sources)})`);
  }
  if (!transportCc && (f.transportCc > 0 || f.sources.twcc)) {
    throw new Error(`${label}: transport-cc seen from a receiver that does not send it (${JSON.stringify(f)})`);
  }
  return f;
}
