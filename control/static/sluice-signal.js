// Signaling plumbing of the browser client (docs/protocol.md "Client → server", "Errors"): the
// event emitter a Room is, the error the server returns, and `Signaling`, which numbers requests (`req`), waits for
// the reply that matches one and fails the request when an `error` echoes its `req`. It knows no
// message type beyond `error`; what each server message does is sluice-dispatch.js.

/** How long a request waits for its reply (and a join for `joined`). */
export const REPLY_TIMEOUT_MS = 10000;
/** How often and how long a request refused as `unavailable` is sent again (`callRetrying`). */
export const UNAVAILABLE_RETRY_MS = 1000;
export const UNAVAILABLE_ATTEMPTS = 20;

/** Tiny event emitter: `on` returns the function that removes the listener. */
export class Emitter {
  #listeners = new Map();

  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.#listeners.get(name)?.delete(fn);
  }

  once(name, fn) {
    const off = this.on(name, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  emit(name, ev) {
    for (const fn of [...(this.#listeners.get(name) ?? [])]) {
      try {
        fn(ev);
      } catch (e) {
        console.error(`sluice: listener for ${name} threw`, e);
      }
    }
  }
}

/** An error the server returned (`error {code, message, field?}`). */
export class SluiceError extends Error {
  constructor({ code, message, field }) {
    super(`${code}: ${message}${field ? ` (field ${field})` : ''}`);
    this.code = code;
    this.field = field;
  }
}

/** Rejects after REPLY_TIMEOUT_MS with "timeout waiting for `what`". */
export function timeout(what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), REPLY_TIMEOUT_MS));
}

/** Requests and replies over one signaling WebSocket. */
export class Signaling {
  #ws;
  #nextReq = 1;
  #pending = new Map(); // req -> {reject}
  #waiters = []; // {match(msg), resolve}
  #quiet = new Set(); // reqs whose `unavailable` refusal their caller handles (callRetrying)

  constructor(ws) {
    this.#ws = ws;
  }

  /** Sends a message with a fresh `req`; returns the req. */
  send(msg) {
    const req = this.#nextReq++;
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify({ ...msg, req }));
    return req;
  }

  /**
   * Sends and waits for the reply matching `match` (or an error echoing our req). `quiet`: an
   * `unavailable` refusal only rejects this call (the caller retries), it is not also reported
   * as the room's `error`.
   */
  async call(msg, match, { quiet = false } = {}) {
    const reply = this.waitFor(match);
    const req = this.send(msg);
    const refused = this.errorFor(req);
    if (quiet) this.#quiet.add(req);
    try {
      return await Promise.race([reply.promise, refused.promise, timeout(msg.type)]);
    } finally {
      reply.cancel();
      refused.cancel();
      this.#quiet.delete(req);
    }
  }

  /**
   * `call`, sent again while the server answers `unavailable` (its dataplane is starting or
   * restarting: HTTP's 503 + Retry-After, docs/api.md), every UNAVAILABLE_RETRY_MS with a
   * little jitter, at most UNAVAILABLE_ATTEMPTS times; any other error or a timeout ends it.
   * Only for requests that are safe to repeat (the server did nothing with the refused one).
   */
  async callRetrying(msg, match, stillWanted = () => true) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(msg, match, { quiet: true });
      } catch (e) {
        if (e?.code !== 'unavailable' || attempt >= UNAVAILABLE_ATTEMPTS || !stillWanted()) throw e;
      }
      await new Promise((r) => setTimeout(r, UNAVAILABLE_RETRY_MS * (0.8 + 0.4 * Math.random())));
    }
  }

  /** `{promise, cancel}`: resolves with the next message `match` accepts. */
  waitFor(match) {
    let entry;
    const promise = new Promise((resolve) => {
      entry = { match, resolve };
      this.#waiters.push(entry);
    });
    return { promise, cancel: () => (this.#waiters = this.#waiters.filter((w) => w !== entry)) };
  }

  /** `{promise, cancel}`: rejects with the server's error for `req`. */
  errorFor(req) {
    let entry;
    const promise = new Promise((_, reject) => {
      entry = { reject };
      this.#pending.set(req, entry);
    });
    promise.catch(() => {});
    return { promise, cancel: () => this.#pending.delete(req) };
  }

  /**
   * A message from the server: resolves the waiters it matches; an `error` rejects the request
   * it echoes and is returned as a SluiceError (null otherwise, and for a refusal a retrying
   * caller handles).
   */
  deliver(msg) {
    for (const w of [...this.#waiters]) {
      if (w.match(msg)) {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        w.resolve(msg);
      }
    }
    if (msg.type !== 'error') return null;
    const err = new SluiceError(msg);
    err.req = msg.req;
    const pending = this.#pending.get(msg.req);
    if (pending) pending.reject(err);
    // Retried by its caller, which reports it if the retries run out.
    if (pending && err.code === 'unavailable' && this.#quiet.has(msg.req)) return null;
    return err;
  }

  /** Closes the socket and fails every request still waiting for an error. */
  close(reason) {
    try {
      this.#ws.close();
    } catch {
      // already closed
    }
    for (const p of this.#pending.values()) p.reject(new Error(`disconnected: ${reason}`));
    this.#pending.clear();
  }
}
