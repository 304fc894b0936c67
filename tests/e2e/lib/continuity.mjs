// Continuity of received media, the one check every media scenario makes (issue 12 §5).
//
// "Frames > 0" passed while video stopped after 3 s of a 10 s window. So a media scenario samples
// what its receiver decoded through the whole window and asserts, after the first frame:
//   - no second without a decoded frame,
//   - no freeze longer than `maxFreezeMs` (500 ms by default),
//   - decoded frames >= `minShare` (80 %) of the sender's frame rate × the window.
// Browser pages are sampled from inside the page (getStats every `sampleMs`); script clients
// (aiortc, GStreamer) report the arrival time of every decoded frame and use `fromFrameTimes`.

/**
 * Samples `page` (a page with window.sluice.room) for `seconds` and returns a timeline of the
 * summed `framesDecoded` of its inbound streams of `kind` (`video` by default), plus Chrome's own
 * freeze counters where it has them. The loop runs inside the page: one evaluate, no polling
 * from the driver.
 * `acrossRejoins`: the page's call moves during the window (a cluster failover or drain gives it
 * new peer connections, whose counters start at 0): a count that goes down is a new receiver,
 * counted on top of what came before, and a read that fails (the old Room's peer connections
 * closed) repeats the last count, so the move shows as a freeze.
 * `outbound`: what the page SENT instead (its outbound-rtp `framesEncoded`, or `packetsSent` for
 * audio): a publisher's own continuity through an event that must not disturb it.
 */
export async function samplePage(page, { seconds = 20, kind = 'video', sampleMs = 200, acrossRejoins = false, outbound = false } = {}) {
  return page.evaluate(
    async ({ seconds, kind, sampleMs, acrossRejoins, outbound }) => {
      const base = { frames: 0, freezeCount: 0, freezeS: 0 };
      let raw = { frames: 0, freezeCount: 0, freezeS: 0 };
      let lastRead = null;
      const read = async () => {
        let s;
        try {
          s = await window.sluice.room.stats();
        } catch (e) {
          if (acrossRejoins && lastRead) return lastRead;
          throw e;
        }
        let frames = 0;
        let freezeCount = 0;
        let freezeS = 0;
        let freezeKnown = false;
        for (const pc of ['publisher', 'subscriber']) {
          for (const r of s[pc] ?? []) {
            if (r.type !== (outbound ? 'outbound-rtp' : 'inbound-rtp') || r.kind !== kind) continue;
            if (outbound) frames += kind === 'video' ? r.framesEncoded ?? 0 : r.packetsSent ?? 0;
            else frames += kind === 'video' ? r.framesDecoded ?? 0 : r.packetsReceived ?? 0;
            if (r.freezeCount !== undefined) {
              freezeKnown = true;
              freezeCount += r.freezeCount;
              freezeS += r.totalFreezesDuration ?? 0;
            }
          }
        }
        if (acrossRejoins) {
          for (const [k, v] of Object.entries({ frames, freezeCount, freezeS })) if (v < raw[k]) base[k] += raw[k];
          raw = { frames, freezeCount, freezeS };
          frames += base.frames;
          freezeCount += base.freezeCount;
          freezeS += base.freezeS;
        }
        lastRead = { frames, freezeCount, freezeS, freezeKnown };
        return lastRead;
      };
      const t0 = performance.now();
      const first = await read();
      const samples = [{ t: 0, frames: first.frames }];
      let last = first;
      while (performance.now() - t0 < seconds * 1000) {
        await new Promise((ok) => setTimeout(ok, sampleMs));
        last = await read();
        samples.push({ t: performance.now() - t0, frames: last.frames });
      }
      return {
        samples,
        chromeFreezes: last.freezeKnown
          ? { count: last.freezeCount - first.freezeCount, totalMs: Math.round((last.freezeS - first.freezeS) * 1000) }
          : null,
      };
    },
    { seconds, kind, sampleMs, acrossRejoins, outbound },
  );
}

/**
 * Turns a sampled timeline (`samplePage`) into the continuity figures:
 * `{frames, perSecond[], zeroSeconds, longestFreezeMs, windowS, chromeFreezes}`. The window starts
 * at the first sample that shows a new frame.
 */
export function fromSamples({ samples, chromeFreezes = null }) {
  const startIdx = samples.findIndex((s, i) => i > 0 && s.frames > samples[i - 1].frames);
  if (startIdx < 0) return { frames: 0, perSecond: [], zeroSeconds: 0, longestFreezeMs: Infinity, windowS: 0, chromeFreezes };
  const t0 = samples[startIdx - 1].t;
  const base = samples[startIdx - 1].frames;
  const end = samples[samples.length - 1];
  const perSecond = [];
  let lastChange = samples[startIdx].t;
  let longest = 0;
  for (let i = startIdx; i < samples.length; i++) {
    const s = samples[i];
    const sec = Math.floor((s.t - t0) / 1000);
    const delta = s.frames - samples[i - 1].frames;
    while (perSecond.length <= sec) perSecond.push(0);
    perSecond[sec] += delta;
    if (delta > 0) {
      longest = Math.max(longest, s.t - lastChange);
      lastChange = s.t;
    }
  }
  longest = Math.max(longest, end.t - lastChange);
  // A trailing partial second is not a "second without frames".
  const windowS = (end.t - t0) / 1000;
  if (windowS - Math.floor(windowS) < 0.999 && perSecond.length > Math.floor(windowS)) perSecond.pop();
  return {
    frames: end.frames - base,
    perSecond,
    zeroSeconds: perSecond.filter((n) => n === 0).length,
    longestFreezeMs: Math.round(longest),
    windowS: Number(windowS.toFixed(2)),
    chromeFreezes,
  };
}

/**
 * The same figures from the arrival times (ms, any origin) of every decoded frame, as script
 * clients report them. The window runs from the first frame to `endMs` (default: the last frame).
 */
export function fromFrameTimes(timesMs, endMs = undefined) {
  if (!timesMs.length) return { frames: 0, perSecond: [], zeroSeconds: 0, longestFreezeMs: Infinity, windowS: 0, chromeFreezes: null };
  const t0 = timesMs[0];
  const end = endMs ?? timesMs[timesMs.length - 1];
  const windowS = (end - t0) / 1000;
  const perSecond = new Array(Math.max(1, Math.floor(windowS))).fill(0);
  let longest = 0;
  for (let i = 0; i < timesMs.length; i++) {
    const sec = Math.floor((timesMs[i] - t0) / 1000);
    if (sec < perSecond.length) perSecond[sec] += 1;
    if (i > 0) longest = Math.max(longest, timesMs[i] - timesMs[i - 1]);
  }
  longest = Math.max(longest, end - timesMs[timesMs.length - 1]);
  return {
    frames: timesMs.length,
    perSecond,
    zeroSeconds: perSecond.filter((n) => n === 0).length,
    longestFreezeMs: Math.round(longest),
    windowS: Number(windowS.toFixed(2)),
    chromeFreezes: null,
  };
}

/**
 * Throws (with every figure in the message) unless the stream was continuous: no zero second,
 * longest freeze <= maxFreezeMs, frames >= minShare × senderFps × window. A scenario whose
 * point is a bounded gap (a cluster drain moves the call to another node) states the seconds
 * without a frame it allows (`maxZeroSeconds`) with its `maxFreezeMs`. Returns a one-line
 * summary for the scenario's details (printed by the runner either way).
 */
export function assertContinuity(label, c, { senderFps, minWindowS = 0, maxFreezeMs = 500, minShare = 0.8, maxZeroSeconds = 0 } = {}) {
  if (!(senderFps > 0)) throw new Error(`${label}: assertContinuity needs the sender's frame rate (senderFps)`);
  const expected = senderFps * c.windowS;
  const summary = {
    label,
    frames: c.frames,
    windowS: c.windowS,
    fps: c.windowS > 0 ? Number((c.frames / c.windowS).toFixed(1)) : 0,
    senderFps,
    share: expected > 0 ? Number((c.frames / expected).toFixed(2)) : 0,
    zeroSeconds: c.zeroSeconds,
    longestFreezeMs: c.longestFreezeMs,
    chromeFreezes: c.chromeFreezes,
    perSecond: c.perSecond.join(','),
  };
  const problems = [];
  if (c.frames === 0) problems.push('no frame decoded');
  if (c.windowS < minWindowS) problems.push(`window ${c.windowS} s < ${minWindowS} s`);
  if (c.zeroSeconds > maxZeroSeconds) problems.push(`${c.zeroSeconds} second(s) without a frame`);
  if (c.longestFreezeMs > maxFreezeMs) problems.push(`longest freeze ${c.longestFreezeMs} ms > ${maxFreezeMs} ms`);
  if (c.frames < minShare * expected) problems.push(`${c.frames} frames < ${minShare} × ${senderFps} fps × ${c.windowS} s`);
  if (problems.length) throw new Error(`${label}: media not continuous: ${problems.join('; ')} — ${JSON.stringify(summary)}`);
  return summary;
}
