// What each server message does to a joined Room (docs/protocol.md "Server → client"): the
// roster and track lists kept up to date, the Room's events emitted, subscriber offers and
// mode changes handed to sluice-sfu.js and sluice-hybrid.js. `dispatch` takes the Room's
// internals `s` (sluice-room.js `internals`), whose `room` is the Room itself.

import { dropMeshPeer, onModeChange, onModeChanged } from './sluice-hybrid.js';
import { closeSfu, dropSubscription, findTrack, onSubscriberOffer, sfuPublish } from './sluice-sfu.js';

/** Adds a remote participant (from `joined` or `participant_joined`) with its tracks. */
export function addParticipant(room, info) {
  const p = { ...info, tracks: new Map() };
  for (const t of info.tracks ?? []) p.tracks.set(t.sid, { ...t, participant_sid: t.participant_sid ?? info.sid });
  room.participants.set(info.sid, p);
  return p;
}

/** One message from the server, after `joined`. */
export function dispatch(s, msg) {
  const room = s.room;
  const err = s.sig.deliver(msg);
  switch (msg.type) {
    case 'error':
      if (err) room.emit('error', err);
      break;
    case 'offer':
      if (msg.pc === 'subscriber') onSubscriberOffer(s, msg.sdp);
      break;
    case 'participant_joined': {
      const p = addParticipant(room, msg.participant);
      room.emit('participant_joined', { participant: p });
      break;
    }
    case 'participant_left': {
      const p = room.participants.get(msg.sid);
      for (const [sid, sub] of room.subscriptions) if (sub.participantSid === msg.sid) dropSubscription(s, sid);
      dropMeshPeer(s, s.mesh?.close(msg.sid));
      if (p) s.audio?.removeParticipant(p.identity);
      room.participants.delete(msg.sid);
      room.emit('participant_left', { sid: msg.sid, identity: msg.identity, participant: p });
      break;
    }
    case 'track_published':
      if (msg.cid === undefined && msg.track) {
        const psid = msg.participant_sid ?? msg.track.participant_sid;
        const p = room.participants.get(psid);
        const info = { ...msg.track, participant_sid: psid };
        if (p) p.tracks.set(info.sid, info);
        room.emit('track_published', { participant: p, track: info });
      }
      break;
    case 'track_unpublished':
      for (const p of room.participants.values()) p.tracks.delete(msg.track_sid);
      dropSubscription(s, msg.track_sid);
      room.emit('track_unpublished', { trackSid: msg.track_sid });
      break;
    case 'track_muted': {
      const t = findTrack(room, (x) => x.sid === msg.track_sid);
      if (t) t.muted = msg.muted;
      room.emit('track_muted', { trackSid: msg.track_sid, muted: msg.muted });
      break;
    }
    case 'role_changed':
      if (msg.identity === room.participant?.identity) room.participant.role = msg.role;
      for (const p of room.participants.values()) if (p.identity === msg.identity) p.role = msg.role;
      room.emit('role_changed', { identity: msg.identity, role: msg.role, self: msg.identity === room.identity });
      break;
    case 'control_requested':
    case 'control_granted':
    case 'control_revoked':
    case 'host_transferred':
      room.emit(msg.type, { identity: msg.identity, self: msg.identity === room.identity });
      break;
    case 'input':
      room.emit('input', { from: msg.from, event: msg.event, via: 'websocket' });
      break;
    case 'input_route':
      room.emit('input_route', { dataChannel: !!msg.data_channel });
      break;
    case 'data_behind':
      // The SFU drops relayed data for us: we read too slowly (docs/protocol.md "Data channels").
      room.emit('data_behind', { reliable: !!msg.reliable, dropped: msg.dropped });
      break;
    case 'stream_state':
      // The SFU paused (or resumed) this subscription for bandwidth (docs/congestion.md;
      // only with dataplane.congestion_pause): the video stops until a probe finds room.
      room.streamStates.set(msg.track_sid, msg.state);
      room.emit('stream_state', { trackSid: msg.track_sid, state: msg.state, reason: msg.reason });
      break;
    case 'active_speakers':
      room.emit('active_speakers', { speakers: msg.speakers });
      break;
    case 'connection_quality':
      room.emit('connection_quality', { updates: msg.updates });
      break;
    case 'leave':
      room._close(msg.reason ?? 'server');
      break;
    case 'ice_servers': {
      // Fresh TURN credentials (they last `turn.ttl_s`; the server sends new ones at half of
      // that): for PCs made from now on and for the open ones' next gathering (ICE restart).
      const iceServers = (msg.ice_servers ?? []).map((x) => ({ ...x }));
      if (s.pcConfig) s.pcConfig = { ...s.pcConfig, iceServers };
      s.mesh?.setIceServers(iceServers);
      for (const pc of [s.pub, s.sub]) {
        try {
          pc?.setConfiguration({ ...pc.getConfiguration(), iceServers });
        } catch {
          // A closed PC refuses it; a new one is made from s.pcConfig.
        }
      }
      break;
    }
    case 'reconnect':
      // The media server restarted and lost our sessions (DTLS included): fresh SFU PCs,
      // publications sent again (the server kept their track sids pending); its new
      // subscriber offer follows on this socket.
      if (room.mode === 'p2p' && !s.sfuLive) break;
      closeSfu(s);
      s.sfuLive = true;
      sfuPublish(s).catch((e) => room.emit('error', e));
      room.emit('reconnect', { reason: msg.reason });
      break;
    case 'p2p_signal':
      // The server relays only while the room is P2P or migrating; an offer that comes while
      // we move to SFU (a newcomer's) is still answered, so a fallback to P2P finds it up.
      s.mesh?.onSignal(msg);
      break;
    case 'mode_change':
      onModeChange(s, msg);
      break;
    case 'mode_changed':
      onModeChanged(s, msg);
      break;
    case 'mode_setting':
      room.modeSetting = msg.setting;
      room.emit('mode_setting', { setting: msg.setting });
      break;
    case 'mode_prewarm':
      // Pre-warm: the server checked the SFU side. An SFU offer now would itself force the
      // room to SFU (protocol), so the client only tells the app.
      room.emit('prewarm', {});
      break;
    case 'notice':
      room.emit('notice', { code: msg.code, message: msg.message });
      break;
    default:
      break;
  }
}
