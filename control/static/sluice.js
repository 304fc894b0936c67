// Sluice browser client: a plain ES module (no framework, no build step) speaking the signaling
// protocol v1 (docs/protocol.md): one WebSocket, two RTCPeerConnections — the publisher (we offer,
// the server answers; sendonly) and the subscriber (the server offers, we answer; recvonly). Two
// PCs because each direction then renegotiates on its own: a new remote track never collides with
// a local publish offer (no glare).
//
//   import { Sluice } from './sluice.js';
//   const room = await Sluice.connect('ws://127.0.0.1:7880', token, { autoSubscribe: true });
//   room.on('track_subscribed', ({ track, trackSid, participant }) => ...);
//   await room.publish(cameraTrack, { source: 'camera', simulcast: true });
//
// Events (room.on(name, fn) returns an unsubscribe function): joined, participant_joined,
// participant_left, track_published, track_unpublished, track_subscribed, track_unsubscribed,
// track_muted, role_changed, control_requested, control_granted, control_revoked,
// host_transferred, input, input_route, active_speakers, connection_quality, ice_restart, error, disconnected.
//
// Hybrid P2P/SFU (issue 8, docs/protocol.md "Hybrid"): `join` says `capabilities: ["p2p"]`
// (opt out with `{p2p: false}`); the server decides the room's mode. In P2P mode media goes over
// a full mesh (sluice-mesh.js) instead of the two SFU PCs; on `mode_change` the client migrates
// (hard cut or gradual) and acknowledges with mode_ack / mode_ready / mode_failed. Every remote
// participant's audio plays through one WebAudio graph (sluice-audio.js) so a path switch is a
// gain change: the library plays remote audio itself (`{playAudio: false}`: it doesn't; take
// `room.audioOutput(identity)`), apps should not play audio tracks again. Extra events: mode
// {mode, id}, migrating {id, from, to, strategy, reason}, mode_setting {setting}, prewarm,
// notice {code, message}, remote_audio {identity, path}, p2p_state {identity, state};
// track_subscribed / track_unsubscribed carry `path: 'sfu'|'p2p'`.
//
// Also: stream_state {trackSid, state, reason} (the SFU paused or resumed a subscription),
// reconnect {reason} (the media server restarted: fresh SFU PCs, publications sent again) and
// queued {position, estimated_wait_ms} (the join waits for a migration; before `connect` resolves).
//
// Data channels (issue 17, sluice-data.js): with `{data: true}` the publisher PC carries
// `_reliable` and `_lossy`, relayed by the SFU: `room.send(data, {reliable, destinations})`
// (string or bytes; destinations: identities, none = the whole room) and the `data` event
// `{from, participant, data, reliable}` (`from`: the sender's identity, stamped by the server).
// `data_open` fires when both channels are open (`await room.dataReady()`); `data_behind`
// {reliable, dropped} when the SFU starts dropping relayed data for us (we read too slowly). Data needs the SFU
// path: in P2P mode the channels open once the room moves to SFU.
//
// The client is split into modules (plain ES modules from this directory, no build step); this
// one is the entry point and holds no logic of its own:
//   sluice-connect.js   connect (redirects, queued joins), stayJoined, devToken, signalUrl
//   sluice-room.js      Room: public state, methods, getters; the internals the others share
//   sluice-dispatch.js  what each server message does (events, roster, tracks)
//   sluice-sfu.js       the SFU publisher/subscriber PCs, data channels, E2EE, SDP helpers
//   sluice-hybrid.js    P2P/SFU migration (mode_change … mode_ready) and the mesh's tracks
//   sluice-ice.js       ping, ICE restart, stall check, stats
//   sluice-signal.js    requests/replies over the WebSocket, Emitter, SluiceError
//   sluice-mesh.js, sluice-audio.js, sluice-data.js, sluice-e2ee.js: P2P PCs, the remote-audio
//   graph, the data-channel envelope, the E2EE frame transform.

import { connect, devToken, signalUrl, stayJoined } from './sluice-connect.js';
import { DEFAULT_SIMULCAST, Room } from './sluice-room.js';
import { parseSections, rewriteCandidates } from './sluice-sfu.js';
import { SluiceError } from './sluice-signal.js';

export { connect, stayJoined, devToken, signalUrl, parseSections, rewriteCandidates, Room, SluiceError, DEFAULT_SIMULCAST };

export const Sluice = { connect, stayJoined, devToken, signalUrl, parseSections, rewriteCandidates, Room, SluiceError, DEFAULT_SIMULCAST };
export default Sluice;
