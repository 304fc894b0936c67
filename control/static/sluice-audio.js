// Remote audio output for the hybrid P2P/SFU client (issue 8): every remote participant's audio,
// whichever path it comes over, goes through one WebAudio graph per participant
//
//   track (P2P) -> MediaStreamSource -> pathSum[p2p] -> pathGain[p2p] -+-> out -> destination
//   track (SFU) -> MediaStreamSource -> pathSum[sfu] -> pathGain[sfu] -+      \-> meter
//                                            \-> meter (per path: "has this path's audio arrived?")
//
// so switching paths is two gain changes at the same audio time, never a new element, and the
// user keeps hearing the same `out` node. Meters (an AudioWorklet, a ScriptProcessor where there
// is none) count runs of near-silent frames: the output meter measures the audio gap of a
// migration, the path meters say when the new path's audio really plays.
//
// Chromium only feeds a remote WebRTC track into WebAudio while the track is also attached to a
// media element, so each remote track is attached to a muted <audio> element as well.

// A render quantum whose peak is below this is "silent" (a test tone is ~0.3; Opus concealment
// fading to nothing and a closed path both fall below it).
const SILENT_PEAK = 0.01;
// How often (in 128-frame quanta) a meter reports: ~21 ms at 48 kHz.
const REPORT_EVERY = 8;

const METER_SOURCE = `
class SluiceMeter extends AudioWorkletProcessor {
  constructor() {
    super();
    this.epoch = 0; this.run = 0; this.longest = 0; this.loud = 0; this.n = 0;
    this.port.onmessage = (e) => {
      if (e.data && e.data.reset !== undefined) {
        this.epoch = e.data.reset; this.run = 0; this.longest = 0; this.loud = 0;
      }
    };
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    let peak = 0;
    const frames = ch ? ch.length : 128;
    if (ch) for (let i = 0; i < ch.length; i++) { const v = ch[i] < 0 ? -ch[i] : ch[i]; if (v > peak) peak = v; }
    if (peak < ${SILENT_PEAK}) {
      this.run += frames;
      if (this.run > this.longest) this.longest = this.run;
    } else {
      this.run = 0;
      this.loud += frames;
    }
    if (++this.n % ${REPORT_EVERY} === 0) {
      this.port.postMessage({ epoch: this.epoch, run: this.run, longest: this.longest, loud: this.loud });
    }
    return true;
  }
}
registerProcessor('sluice-meter', SluiceMeter);
`;

/**
 * Counts silent and loud frames of whatever is connected to `input`. `state` (frames, at the
 * context's sample rate) is updated ~50 times a second; `reset()` starts a new measurement.
 */
class Meter {
  state = { run: 0, longest: 0, loud: 0 };
  #epoch = 0;
  #node;
  #ctx;

  constructor(ctx, worklet) {
    this.#ctx = ctx;
    if (worklet) {
      // No outputs: Chromium pulls such a node by itself, nothing needs to reach the destination.
      this.#node = new AudioWorkletNode(ctx, 'sluice-meter', { numberOfInputs: 1, numberOfOutputs: 0 });
      this.#node.port.onmessage = (e) => {
        if (e.data.epoch === this.#epoch) this.state = { run: e.data.run, longest: e.data.longest, loud: e.data.loud };
      };
      this.input = this.#node;
    } else {
      // ScriptProcessor fallback: it only runs while connected to the destination (through a
      // zero gain so it adds nothing to what the user hears).
      const proc = ctx.createScriptProcessor(1024, 1, 1);
      const sink = ctx.createGain();
      sink.gain.value = 0;
      proc.connect(sink).connect(ctx.destination);
      proc.onaudioprocess = (e) => {
        const ch = e.inputBuffer.getChannelData(0);
        const s = this.state;
        for (let off = 0; off < ch.length; off += 128) {
          let peak = 0;
          for (let i = off; i < Math.min(off + 128, ch.length); i++) peak = Math.max(peak, Math.abs(ch[i]));
          const frames = Math.min(128, ch.length - off);
          if (peak < SILENT_PEAK) {
            s.run += frames;
            s.longest = Math.max(s.longest, s.run);
          } else {
            s.run = 0;
            s.loud += frames;
          }
        }
      };
      this.#node = proc;
      this.input = proc;
    }
  }

  reset() {
    this.#epoch++;
    this.state = { run: 0, longest: 0, loud: 0 };
    this.#node.port?.postMessage({ reset: this.#epoch });
  }

  /** Milliseconds of the state's frame counts. */
  ms(frames) {
    return Math.round((frames / this.#ctx.sampleRate) * 1000);
  }

  /** Whether audio was loud within the last `ms`. */
  audible(ms = 250) {
    return this.state.loud > 0 && this.ms(this.state.run) < ms;
  }

  close() {
    try {
      this.#node.disconnect();
    } catch {
      // already disconnected
    }
    if (this.#node.port) this.#node.port.onmessage = null;
  }
}

/** The per-participant graphs; `path` is the path every participant is heard over. */
export class AudioOutput {
  /** 'p2p' | 'sfu': the path whose gain is 1. */
  path;
  ctx;
  #worklet = false;
  #ready;
  #play;
  #people = new Map(); // identity -> {out, meter, paths: {p2p, sfu}}
  #onAudio;

  /**
   * `play`: connect every output to the speakers (false: the app takes `output(identity)`).
   * `onAudio(identity, path)`: called when a path of a participant first plays sound.
   * `meter`: 'worklet' (an AudioWorklet where there is one) or 'script' (ScriptProcessor).
   */
  constructor({ path = 'sfu', play = true, onAudio = () => {}, meter = 'worklet' } = {}) {
    this.path = path;
    this.#play = play;
    this.#onAudio = onAudio;
    this.ctx = new AudioContext();
    this.#ready = meter === 'script' ? Promise.resolve() : this.#loadWorklet();
    // A context made without a user gesture starts suspended (autoplay policy): resume it on the
    // first one. Until then `running` is false and callers must not wait for meters.
    if (this.ctx.state !== 'running' && typeof document !== 'undefined') {
      const resume = () => this.ctx.resume().catch(() => {});
      for (const ev of ['pointerdown', 'keydown']) document.addEventListener(ev, resume, { once: true, capture: true });
    }
  }

  /** Whether the graph is processing audio (meters count, the user hears it). */
  get running() {
    return this.ctx.state === 'running';
  }

  async #loadWorklet() {
    if (!this.ctx.audioWorklet) return;
    const url = URL.createObjectURL(new Blob([METER_SOURCE], { type: 'application/javascript' }));
    try {
      await this.ctx.audioWorklet.addModule(url);
      this.#worklet = true;
    } catch (e) {
      console.warn('sluice: AudioWorklet unavailable, metering with ScriptProcessor', e);
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  /** Resolves once the meter module is loaded (tracks added before that wait for it). */
  ready() {
    return this.#ready;
  }

  #person(identity) {
    let p = this.#people.get(identity);
    if (p) return p;
    const out = this.ctx.createGain();
    if (this.#play) out.connect(this.ctx.destination);
    const meter = new Meter(this.ctx, this.#worklet);
    out.connect(meter.input);
    p = { identity, out, meter, paths: {} };
    for (const name of ['p2p', 'sfu']) {
      const sum = this.ctx.createGain();
      const gain = this.ctx.createGain();
      gain.gain.value = name === this.path ? 1 : 0;
      const pm = new Meter(this.ctx, this.#worklet);
      sum.connect(gain).connect(out);
      sum.connect(pm.input);
      p.paths[name] = { sum, gain, meter: pm, sources: new Map(), announced: false, timer: null };
    }
    this.#people.set(identity, p);
    return p;
  }

  /** Routes a remote audio track of `identity` arriving over `path` into the graph. */
  async addTrack(identity, path, track) {
    await this.#ready;
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    const p = this.#person(identity);
    const slot = p.paths[path];
    if (slot.sources.has(track.id)) return;
    const stream = new MediaStream([track]);
    const el = document.createElement('audio');
    el.muted = true;
    el.srcObject = stream;
    el.play().catch(() => {});
    const source = this.ctx.createMediaStreamSource(stream);
    source.connect(slot.sum);
    slot.sources.set(track.id, { source, el, track });
    // Tell the app when this path's audio first plays (bounded: 20 s of checks).
    if (!slot.announced && !slot.timer) {
      let tries = 0;
      slot.timer = setInterval(() => {
        if (slot.meter.state.loud > 0 || ++tries > 200) {
          clearInterval(slot.timer);
          slot.timer = null;
          if (slot.meter.state.loud > 0 && !slot.announced) {
            slot.announced = true;
            this.#onAudio(identity, path);
          }
        }
      }, 100);
    }
  }

  /** Removes one track (by MediaStreamTrack id) or, without `trackId`, every track of a path. */
  removeTrack(identity, path, trackId) {
    const p = this.#people.get(identity);
    if (!p) return;
    const slot = p.paths[path];
    for (const [id, s] of [...slot.sources]) {
      if (trackId !== undefined && id !== trackId) continue;
      s.source.disconnect();
      s.el.srcObject = null;
      slot.sources.delete(id);
    }
    if (slot.sources.size === 0) {
      clearInterval(slot.timer);
      slot.timer = null;
      slot.announced = false;
      slot.meter.reset();
    }
  }

  /** Removes every track of `path` for every participant. */
  removePath(path) {
    for (const identity of this.#people.keys()) this.removeTrack(identity, path);
  }

  /** Forgets a participant that left. */
  removeParticipant(identity) {
    const p = this.#people.get(identity);
    if (!p) return;
    for (const name of Object.keys(p.paths)) {
      this.removeTrack(identity, name);
      p.paths[name].meter.close();
    }
    p.meter.close();
    p.out.disconnect();
    this.#people.delete(identity);
  }

  /** Switches every participant to `path` at one audio time (a 5 ms ramp, no click). */
  switchTo(path) {
    this.path = path;
    const t = this.ctx.currentTime;
    for (const p of this.#people.values()) {
      for (const [name, slot] of Object.entries(p.paths)) {
        const g = slot.gain.gain;
        g.cancelScheduledValues(t);
        g.setValueAtTime(g.value, t);
        g.linearRampToValueAtTime(name === path ? 1 : 0, t + 0.005);
      }
    }
  }

  /** The node carrying what the user hears from `identity` (null before any audio track). */
  output(identity) {
    return this.#people.get(identity)?.out ?? null;
  }

  /** Whether `identity`'s audio over `path` has played sound since that path's tracks arrived. */
  pathPlays(identity, path) {
    return (this.#people.get(identity)?.paths[path]?.meter.state.loud ?? 0) > 0;
  }

  /** Identities whose output was audible just now (the ones a migration gap is measured for). */
  audibleNow() {
    return [...this.#people.values()].filter((p) => p.meter.audible()).map((p) => p.identity);
  }

  /** Starts a gap measurement on every output. */
  startGap() {
    for (const p of this.#people.values()) p.meter.reset();
  }

  /** The longest silent run (ms) since `startGap` of each of `identities`' outputs. */
  gaps(identities) {
    const out = {};
    for (const id of identities) {
      const p = this.#people.get(id);
      out[id] = p ? p.meter.ms(p.meter.state.longest) : null;
    }
    return out;
  }

  close() {
    for (const id of [...this.#people.keys()]) this.removeParticipant(id);
    this.ctx.close().catch(() => {});
  }
}
