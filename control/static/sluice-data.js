// Data channels of the browser client (issue 17, docs/protocol.md "Data channels"): two SCTP
// channels on the SFU publisher PeerConnection, `_reliable` (ordered, retransmitted) and
// `_lossy` (unordered, no retransmissions). The dataplane relays what we send on one of them to
// the room's other participants on their channel of the same label, stamped with our identity
// by the server.
//
// Each message carries a small envelope (the dataplane reads nothing else):
//   we send      [1][n] + n × ([len] + destination identity) + payload   (n = 0: whole room)
//   we receive   [1][len] + sender identity + payload
// A string payload goes out as a text message and arrives as one: identities are ASCII and
// shorter than 128 bytes, so every envelope byte is a one-byte character. Bytes go out binary.
//
// A third channel, `_input` (unordered, no retransmissions), carries remote-control input (D87):
// the server relays what a controller sends on it only to the host, and only while the host has
// granted it control (it drops and counts anything else, whatever the envelope names). The
// controller's `sendInput` uses it when it is open and the server said it routes it
// (`input_route {data_channel: true}`), else the WebSocket's `input` message; the host gets the
// same `input` event either way, with `via` saying which.

export const RELIABLE = '_reliable';
export const LOSSY = '_lossy';
export const INPUT = '_input';
/** Destinations one message may name (the dataplane refuses more). */
export const MAX_DESTINATIONS = 64;
/** Longest identity that has data channels (one ASCII length byte). */
export const MAX_IDENTITY = 127;
/** The largest message the server accepts (its SDP a=max-message-size), envelope included. */
export const MAX_MESSAGE = 65536;

const ENVELOPE_V1 = 1;
const IDENTITY = /^[A-Za-z0-9_.@-]{1,127}$/;
const enc = new TextEncoder();

/** The envelope for `payload` (string or bytes) to `to` (identities; empty: the whole room). */
export function encodeEnvelope(payload, to = []) {
  if (!Array.isArray(to)) throw new TypeError('destinations must be an array of identities');
  if (to.length > MAX_DESTINATIONS) throw new RangeError(`at most ${MAX_DESTINATIONS} destinations`);
  for (const id of to) {
    if (typeof id !== 'string' || !IDENTITY.test(id)) throw new TypeError(`destination ${JSON.stringify(id)} is not an identity`);
  }
  if (typeof payload === 'string') {
    const head = String.fromCharCode(ENVELOPE_V1, to.length) + to.map((id) => String.fromCharCode(id.length) + id).join('');
    const msg = head + payload;
    if (head.length + enc.encode(payload).length > MAX_MESSAGE) throw new RangeError(`message over ${MAX_MESSAGE} bytes`);
    return msg;
  }
  const body = payload instanceof ArrayBuffer ? new Uint8Array(payload) : ArrayBuffer.isView(payload)
    ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
    : null;
  if (!body) throw new TypeError('data must be a string, an ArrayBuffer or a typed array');
  const headLen = 2 + to.reduce((n, id) => n + 1 + id.length, 0);
  if (headLen + body.length > MAX_MESSAGE) throw new RangeError(`message over ${MAX_MESSAGE} bytes`);
  const out = new Uint8Array(headLen + body.length);
  out[0] = ENVELOPE_V1;
  out[1] = to.length;
  let i = 2;
  for (const id of to) {
    out[i++] = id.length;
    out.set(enc.encode(id), i);
    i += id.length;
  }
  out.set(body, i);
  return out;
}

/** `{from, data}` of a received message (`data`: string or Uint8Array), or null when malformed. */
export function decodeEnvelope(raw) {
  if (typeof raw === 'string') {
    if (raw.length < 2 || raw.charCodeAt(0) !== ENVELOPE_V1) return null;
    const len = raw.charCodeAt(1);
    if (len === 0 || raw.length < 2 + len) return null;
    return { from: raw.slice(2, 2 + len), data: raw.slice(2 + len) };
  }
  const bytes = new Uint8Array(raw);
  if (bytes.length < 2 || bytes[0] !== ENVELOPE_V1) return null;
  const len = bytes[1];
  if (len === 0 || bytes.length < 2 + len) return null;
  let from = '';
  for (let i = 2; i < 2 + len; i++) from += String.fromCharCode(bytes[i]);
  return { from, data: bytes.subarray(2 + len) };
}

/** The channels on one publisher PC. */
export class DataLink {
  #channels;
  #input;
  #onMessage;

  /**
   * Creates the channels on `pc` (before its offer, so the offer carries the data section).
   * `onMessage({from, data, reliable})` for every well-formed message; `onInput({from, event})`
   * for every input event that came on `_input`; `onState()` when a channel opens or closes.
   */
  constructor(pc, { onMessage, onInput, onState }) {
    this.#onMessage = onMessage;
    this.#channels = {
      reliable: pc.createDataChannel(RELIABLE, { ordered: true }),
      lossy: pc.createDataChannel(LOSSY, { ordered: false, maxRetransmits: 0 }),
    };
    this.#input = pc.createDataChannel(INPUT, { ordered: false, maxRetransmits: 0 });
    for (const [kind, ch] of Object.entries(this.#channels)) {
      ch.binaryType = 'arraybuffer';
      ch.onmessage = (ev) => this.#receive(ev.data, kind === 'reliable');
      ch.onopen = () => onState?.();
      ch.onclose = () => onState?.();
    }
    this.#input.onmessage = (ev) => {
      const m = typeof ev.data === 'string' ? decodeEnvelope(ev.data) : null;
      if (!m) return;
      try {
        onInput?.({ from: m.from, event: JSON.parse(m.data) });
      } catch {
        // Not JSON: not an input event of this library.
      }
    };
  }

  /** Whether `_reliable` and `_lossy` are open. */
  get open() {
    return Object.values(this.#channels).every((c) => c.readyState === 'open');
  }

  /** Whether `_input` is open. */
  get inputOpen() {
    return this.#input.readyState === 'open';
  }

  /** Sends an input event (JSON) on `_input`; false when the channel is not open. */
  sendInput(event) {
    if (!this.inputOpen) return false;
    this.#input.send(encodeEnvelope(JSON.stringify(event)));
    return true;
  }

  /** The channels, for tests and flow control (`bufferedAmount`). */
  get channels() {
    return { ...this.#channels, input: this.#input };
  }

  send(data, { reliable = true, to = [] } = {}) {
    const ch = reliable ? this.#channels.reliable : this.#channels.lossy;
    if (ch.readyState !== 'open') throw new Error(`data channel ${ch.label} is ${ch.readyState}`);
    ch.send(encodeEnvelope(data, to));
  }

  close() {
    for (const ch of Object.values(this.#channels)) ch.close();
    this.#input.close();
  }

  #receive(raw, reliable) {
    const m = decodeEnvelope(raw);
    if (m) this.#onMessage({ ...m, reliable });
  }
}

/**
 * Whether the SFU relays our `_input` to the host now, from the server's `input_route
 * {data_channel}` message (sent before `control_granted`, and when the route goes: revoke, host
 * transfer or leave, or a host without data channels). The server enforces it; this only picks
 * the input path.
 */
export function controlHolder(room) {
  let held = false;
  room.on('input_route', (e) => { held = e.dataChannel; });
  return { get held() { return held; } };
}

/**
 * The controller's input path: `_input` when it is open and the SFU routes it (or `via` says
 * `data_channel`), else the WebSocket through `viaWebSocket(event)`. Returns the path used.
 */
export function sendInput(link, control, event, via, viaWebSocket) {
  const dc = via === 'data_channel' || (via !== 'websocket' && control.held);
  if (dc && link?.sendInput(event)) return 'data_channel';
  viaWebSocket(event);
  return 'websocket';
}
