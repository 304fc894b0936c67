// The P2P side of the hybrid client (issue 8, docs/protocol.md "P2P relay"): one
// RTCPeerConnection per remote participant, signaled through the server's `p2p_signal` relay.
//
// Who offers first is the protocol's rule (no glare on the first offer): a new member offers to
// everyone already in the room; after a return from SFU the lexicographically greater sid
// offers. Later renegotiations (a track published or unpublished) can collide, so each pair runs
// the "perfect negotiation" pattern: the peer that made the first offer is impolite (ignores a
// colliding offer), the other is polite (rolls its own offer back).

export class Mesh {
  /** Remote sid -> peer `{sid, identity, pc, polite, makingOffer, ignoreOffer, queue, senders}`. */
  peers = new Map();
  #config;
  #send;
  #onTrack;
  #onState;
  #localTracks;

  /**
   * `config`: RTCConfiguration for every PC; `send(msg)`: a signaling message out;
   * `onTrack(peer, event)`; `onState(peer)`: a PC's connectionState changed;
   * `localTracks()`: `[{track, stream}]` to send (the local publications: a viewer has none, so
   * its PCs only receive).
   */
  constructor({ config, send, onTrack, onState, localTracks }) {
    this.#config = config;
    this.#send = send;
    this.#onTrack = onTrack;
    this.#onState = onState;
    this.#localTracks = localTracks;
  }

  /** Fresh TURN credentials: for PCs opened from now on and the open ones' next ICE restart. */
  setIceServers(iceServers) {
    this.#config = { ...this.#config, iceServers };
    for (const peer of this.peers.values()) {
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers });
      } catch {
        // A closed PC refuses it; it is dropped on its own.
      }
    }
  }

  /** Opens the PC to `sid` and sends the first offer (we are the offering side of this pair). */
  connect(sid, identity) {
    if (this.peers.has(sid)) return this.peers.get(sid);
    const peer = this.#open(sid, identity, false);
    // With nothing to send yet there would be no m= section and no ICE: ask for audio anyway.
    if (!peer.pc.getTransceivers().some((t) => t.receiver.track.kind === 'audio')) {
      peer.pc.addTransceiver('audio', { direction: 'recvonly' });
    }
    return peer;
  }

  #open(sid, identity, polite) {
    const pc = new RTCPeerConnection(this.#config);
    const peer = { sid, identity, pc, polite, makingOffer: false, ignoreOffer: false, queue: Promise.resolve(), senders: new Map(), closed: false };
    this.peers.set(sid, peer);
    pc.onicecandidate = (ev) => {
      this.#send({ type: 'p2p_signal', to: sid, signal: { type: 'candidate', candidate: ev.candidate ? ev.candidate.toJSON() : null } });
    };
    pc.onnegotiationneeded = async () => {
      if (peer.closed) return;
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        this.#send({ type: 'p2p_signal', to: sid, signal: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      } catch (e) {
        console.warn(`sluice: p2p offer to ${identity} failed`, e);
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.ontrack = (ev) => this.#onTrack(peer, ev);
    pc.onconnectionstatechange = () => {
      // The offering side of the pair restarts ICE on failure (the restart offer is an ordinary
      // renegotiation, so perfect negotiation covers a collision).
      if (pc.connectionState === 'failed' && !peer.polite && !peer.closed) pc.restartIce();
      this.#onState(peer);
    };
    for (const { track, stream } of this.#localTracks()) this.#addTo(peer, track, stream);
    return peer;
  }

  #addTo(peer, track, stream) {
    if (peer.senders.has(track.id) || peer.closed) return;
    peer.senders.set(track.id, peer.pc.addTrack(track, stream));
  }

  /** A `p2p_signal {from, from_identity, signal}` from the server. */
  onSignal({ from, from_identity: identity, signal }) {
    let peer = this.peers.get(from);
    if (!peer) {
      // Only an offer opens a PC.
      if (signal?.type !== 'offer') return;
      peer = this.#open(from, identity, true);
    }
    const run = () => this.#apply(peer, signal);
    peer.queue = peer.queue.then(run, run).catch((e) => console.warn(`sluice: p2p signal from ${peer.identity}`, e));
  }

  async #apply(peer, signal) {
    const pc = peer.pc;
    if (peer.closed) return;
    if (signal.type === 'offer' || signal.type === 'answer') {
      const collision = signal.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable');
      peer.ignoreOffer = !peer.polite && collision;
      if (peer.ignoreOffer) return;
      await pc.setRemoteDescription({ type: signal.type, sdp: signal.sdp });
      if (signal.type === 'offer') {
        // Added after the offer so they take the offered transceivers (no second round).
        for (const { track, stream } of this.#localTracks()) this.#addTo(peer, track, stream);
        await pc.setLocalDescription();
        this.#send({ type: 'p2p_signal', to: peer.sid, signal: { type: 'answer', sdp: pc.localDescription.sdp } });
      }
    } else if (signal.type === 'candidate') {
      try {
        await pc.addIceCandidate(signal.candidate ?? null);
      } catch (e) {
        if (!peer.ignoreOffer) throw e;
      }
    }
  }

  /** Sends a new local track on every PC (renegotiates each). */
  addTrack(track, stream) {
    for (const peer of this.peers.values()) this.#addTo(peer, track, stream);
  }

  /** Stops sending a local track on every PC. */
  removeTrack(track) {
    for (const peer of this.peers.values()) {
      const sender = peer.senders.get(track.id);
      if (!sender || peer.closed) continue;
      peer.senders.delete(track.id);
      peer.pc.removeTrack(sender);
    }
  }

  /** Closes the PC to `sid`; returns the closed peer (or undefined). */
  close(sid) {
    const peer = this.peers.get(sid);
    if (!peer) return undefined;
    peer.closed = true;
    this.peers.delete(sid);
    peer.pc.close();
    return peer;
  }

  /** Closes every PC; returns the closed peers. */
  closeAll() {
    return [...this.peers.keys()].map((sid) => this.close(sid));
  }
}
