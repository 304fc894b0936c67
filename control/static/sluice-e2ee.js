// Sluice E2EE frame transform: AES-GCM over each encoded frame with a shared key, so the SFU
// forwards payloads it cannot read (the "E2EE passthrough" the server must not break).
//
// Used two ways, from the same code: inside a worker through RTCRtpScriptTransform
// (sluice-e2ee-worker.js), and on the main thread through Chromium's older
// createEncodedStreams() when RTCRtpScriptTransform is missing.
//
// Frame layout on the wire (after the packetizer's own payload descriptor):
//   clear[CLEAR_BYTES] | AES-GCM ciphertext + 16-byte tag | iv[12] | TRAILER
// One byte stays clear: enough for a forwarder that peeks at VP8's key-frame bit, and too little
// for a decoder without the key — the VP8 key-frame start code (bytes 3..5) is encrypted, so a
// page without the key decodes nothing (this is what the e2e test asserts).

const CLEAR_BYTES = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const TRAILER = 0x5e;

/** Derives the AES-GCM key from a shared passphrase (SHA-256 of its UTF-8 bytes). */
export async function deriveKey(passphrase) {
  const raw = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(passphrase));
  return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** Counters a page can read to prove frames were (not) decrypted. */
export function newCounters() {
  return { encrypted: 0, decrypted: 0, decryptFailed: 0 };
}

/**
 * A TransformStream that encrypts (`direction === 'encrypt'`) or decrypts encoded frames.
 * Frames that fail to decrypt are dropped, never passed to the decoder.
 */
export function frameTransform(key, direction, counters) {
  return new TransformStream({
    async transform(frame, controller) {
      try {
        if (direction === 'encrypt') {
          frame.data = await encrypt(key, frame.data);
          counters.encrypted++;
        } else {
          frame.data = await decrypt(key, frame.data);
          counters.decrypted++;
        }
        controller.enqueue(frame);
      } catch {
        counters.decryptFailed++;
      }
    },
  });
}

async function encrypt(key, data) {
  const input = new Uint8Array(data);
  const clear = Math.min(CLEAR_BYTES, input.length);
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: input.subarray(0, clear) },
      key,
      input.subarray(clear),
    ),
  );
  const out = new Uint8Array(clear + sealed.length + IV_BYTES + 1);
  out.set(input.subarray(0, clear), 0);
  out.set(sealed, clear);
  out.set(iv, clear + sealed.length);
  out[out.length - 1] = TRAILER;
  return out.buffer;
}

async function decrypt(key, data) {
  const input = new Uint8Array(data);
  if (input.length < TAG_BYTES + IV_BYTES + 1 || input[input.length - 1] !== TRAILER) {
    throw new Error('not an encrypted frame');
  }
  const ivStart = input.length - 1 - IV_BYTES;
  const clear = Math.min(CLEAR_BYTES, ivStart - TAG_BYTES);
  const iv = input.subarray(ivStart, ivStart + IV_BYTES);
  const opened = new Uint8Array(
    await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv, additionalData: input.subarray(0, clear) },
      key,
      input.subarray(clear, ivStart),
    ),
  );
  const out = new Uint8Array(clear + opened.length);
  out.set(input.subarray(0, clear), 0);
  out.set(opened, clear);
  return out.buffer;
}
