// Worker side of RTCRtpScriptTransform for Sluice E2EE (see sluice-e2ee.js for the format).
// The main thread posts {passphrase} once; each transform carries {direction} in its options.
// Counters go back to the main thread on every change of the decrypt outcome, so tests can read
// them without a round trip.

import { deriveKey, frameTransform, newCounters } from './sluice-e2ee.js';

let keyPromise = null;
const counters = newCounters();

self.onmessage = (event) => {
  if (event.data && typeof event.data.passphrase === 'string') {
    keyPromise = deriveKey(event.data.passphrase);
  }
};

self.onrtctransform = async (event) => {
  const { readable, writable, options } = event.transformer;
  const key = await keyPromise;
  const report = () => self.postMessage({ counters: { ...counters } });
  const timer = setInterval(report, 500);
  try {
    await readable.pipeThrough(frameTransform(key, options.direction, counters)).pipeTo(writable);
  } finally {
    clearInterval(timer);
    report();
  }
};
