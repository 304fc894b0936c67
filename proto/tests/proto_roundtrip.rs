//! Control-socket protocol: every message through encode → byte-at-a-time decode, the decode
//! errors a peer can provoke, and `ControlClient` against a `ControlConn` server thread over a
//! real Unix socket.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use sluice_proto::*;

fn ice() -> IceParams {
    IceParams {
        ufrag: "aB3+".into(),
        pwd: "0123456789abcdefghij/+".into(),
        remote_ufrag: Some("remo".into()),
        remote_pwd: None,
    }
}

fn create_session() -> CreateSession {
    CreateSession {
        session: SessionId(1),
        ice: ice(),
        remote_fingerprint: Some(format!("sha-256 {}", ["AB"; 32].join(":"))),
        dtls_role: DtlsRole::Server,
        shard_hint: Some(2),
        mode: TransportMode::Webrtc {},
        data: None,
        quality: Quality {
            max_bitrate_bps: 2_500_000,
            priority: 3,
        },
    }
}

fn add_track() -> AddTrack {
    AddTrack {
        session: SessionId(1),
        track: TrackId(10),
        kind: MediaKind::Video,
        codec: Codec {
            name: "VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            rtx_payload_type: Some(97),
        },
        layers: vec![
            Layer {
                rid: Some("q".into()),
                ssrc: Some(1111),
                rtx_ssrc: Some(1112),
            },
            Layer {
                rid: Some("h".into()),
                ssrc: None,
                rtx_ssrc: None,
            },
        ],
        ext_ids: ExtIds {
            transport_cc: Some(3),
            mid: Some(4),
            rid: Some(10),
            repaired_rid: Some(11),
            ..ExtIds::default()
        },
        e2ee: false,
        source: Source::Camera,
        mid: Some("1".into()),
    }
}

fn subscribe() -> Subscribe {
    Subscribe {
        subscription: SubscriptionId(100),
        session: SessionId(2),
        track: TrackId(10),
        ssrc: 5000,
        rtx_ssrc: Some(5001),
        payload_type: 96,
        rtx_payload_type: Some(97),
        ext_ids: ExtIds {
            transport_cc: Some(5),
            ..ExtIds::default()
        },
    }
}

fn stats() -> ShardStats {
    let dropped = BTreeMap::from([
        ("srtp_auth".to_string(), 4),
        ("unknown_ssrc".to_string(), 1),
    ]);
    ShardStats {
        shard: 1,
        counters: Counters {
            rx_packets: 10,
            tx_packets: 20,
            rx_bytes: 1000,
            tx_bytes: 2000,
            dropped,
            sessions: 3,
            loop_overruns: 0,
        },
    }
}

fn commands() -> Vec<Command> {
    let sid = SessionId(1);
    vec![
        Command::CreateSession(create_session()),
        Command::CreateSession(CreateSession {
            mode: TransportMode::PlainRtp {
                remote: "127.0.0.1:5004".parse().unwrap(),
                local_port: Some(40000),
            },
            remote_fingerprint: None,
            ..create_session()
        }),
        Command::CloseSession { session: sid },
        Command::SetRemote {
            session: sid,
            remote_ufrag: "abcd".into(),
            remote_pwd: "x".repeat(22),
            remote_fingerprint: None,
        },
        Command::IceRestart {
            session: sid,
            ufrag: "wxyz".into(),
            pwd: "y".repeat(22),
            remote_ufrag: None,
            remote_pwd: None,
        },
        Command::AddTrack(add_track()),
        Command::RemoveTrack { track: TrackId(10) },
        Command::Subscribe(subscribe()),
        Command::Unsubscribe {
            subscription: SubscriptionId(100),
        },
        Command::SetMuted {
            track: TrackId(10),
            muted: true,
        },
        Command::SetLayerCap {
            subscription: SubscriptionId(100),
            max_spatial: 1,
            max_temporal: 2,
        },
        Command::SetPriority {
            target: PriorityTarget::Subscription(SubscriptionId(100)),
            priority: 9,
        },
        Command::SetPriority {
            target: PriorityTarget::Session(sid),
            priority: 1,
        },
        Command::ListSessions { after: None },
        Command::ListTracks {
            after: Some(TrackId(9)),
        },
        Command::ListSubscriptions { after: None },
        Command::Ping {},
        Command::Stats {},
        Command::Shutdown {},
        Command::SessionStats { session: sid },
        Command::CreateSession(CreateSession {
            mode: TransportMode::Trunk {
                remote: "10.0.0.2:7882".parse().unwrap(),
                local_port: None,
                crypto: TrunkCrypto::Srtp {
                    local_node: "node-a".into(),
                    remote_node: "node-b".into(),
                    epoch: 7,
                },
                silence_ms: Some(3_000),
            },
            remote_fingerprint: None,
            ..create_session()
        }),
        Command::CreateSession(CreateSession {
            mode: TransportMode::Trunk {
                remote: "10.0.0.2:7882".parse().unwrap(),
                local_port: Some(7883),
                crypto: TrunkCrypto::Trusted {},
                silence_ms: None,
            },
            remote_fingerprint: None,
            ..create_session()
        }),
        Command::SendData(SendData {
            room: "r1".into(),
            from: "$server".into(),
            to: vec!["bob".into()],
            reliable: false,
            binary: true,
            payload: vec![0, 1, 255],
        }),
        Command::UpdateData(UpdateData {
            session: SessionId(3),
            can_publish: false,
            input_to: Some("host".into()),
        }),
        Command::CreateSession(CreateSession {
            data: Some(DataSpec {
                room: "r1".into(),
                participant: "ctl".into(),
                can_publish: true,
                open_channels: false,
                remote_max_message_size: None,
                max_rate: None,
                input_to: Some("host".into()),
            }),
            ..create_session()
        }),
        Command::RelayTrack(RelayTrack {
            subscription: SubscriptionId(900),
            session: SessionId(700),
            track: TrackId(10),
            layer: 2,
            ssrc: 71_000,
            rtx_ssrc: Some(71_001),
            payload_type: 96,
            rtx_payload_type: Some(97),
            ext_ids: ExtIds::default(),
        }),
    ]
}

fn notifications() -> Vec<Notification> {
    let sid = SessionId(1);
    let remote = "[::1]:50000".parse().unwrap();
    vec![
        Notification::IceConnected {
            session: sid,
            remote,
            transport: CandidateProtocol::Tcp,
        },
        Notification::IceDisconnected { session: sid },
        Notification::SelectedPairChanged {
            session: sid,
            local: "127.0.0.1:3478".parse().unwrap(),
            remote,
            transport: CandidateProtocol::Udp,
        },
        Notification::DtlsConnected {
            session: sid,
            profile: "SRTP_AEAD_AES_128_GCM".into(),
            version: "DTLS 1.2".into(),
        },
        Notification::DtlsFailed {
            session: sid,
            reason: "fingerprint mismatch".into(),
        },
        Notification::FirstPacket {
            track: TrackId(10),
            layer: 0,
        },
        Notification::Keyframe {
            track: TrackId(10),
            layer: 1,
        },
        Notification::DataBehind {
            session: SessionId(1),
            reliable: true,
            dropped: 3,
        },
        Notification::TrunkSilent {
            session: sid,
            silent_ms: 2_000,
        },
        Notification::TrunkResumed {
            session: sid,
            silent_ms: 4_250,
        },
        Notification::RelayShed {
            session: sid,
            subscription: SubscriptionId(900),
            shed: true,
            estimate_bps: 1_016_000,
        },
        Notification::SessionClosed {
            session: sid,
            reason: CloseReason::IceTimeout,
        },
        Notification::StatsSnapshot(stats()),
        Notification::StreamState {
            session: sid,
            subscription: SubscriptionId(30),
            state: StreamState::Paused,
        },
    ]
}

fn replies() -> Vec<ReplyResult> {
    let candidate = Candidate {
        foundation: "1".into(),
        addr: "127.0.0.1:3478".parse().unwrap(),
        protocol: CandidateProtocol::Udp,
        priority: 2_130_706_431,
    };
    let oks = vec![
        ReplyOk::Done {},
        ReplyOk::SessionCreated {
            shard: 1,
            local_candidates: vec![candidate],
        },
        ReplyOk::Sessions {
            sessions: vec![SessionInfo {
                spec: create_session(),
                shard: 1,
                state: SessionState::Connected,
            }],
            next: Some(SessionId(1)),
        },
        ReplyOk::Tracks {
            tracks: vec![TrackInfo {
                spec: add_track(),
                muted: false,
                active_layers: vec![0],
            }],
            next: None,
        },
        ReplyOk::Subscriptions {
            subscriptions: vec![SubscriptionInfo {
                spec: subscribe(),
                max_spatial: 2,
                max_temporal: 3,
                priority: 0,
            }],
            next: None,
        },
        ReplyOk::Pong {},
        ReplyOk::Stats {
            shards: vec![stats()],
        },
        ReplyOk::SessionStats(SessionStatsReport {
            worker: Some(1),
            connected: true,
            estimate_bps: 2_400_000,
            estimate_source: "probe".into(),
            acked_bps: Some(1_100_000),
            sent_bps: 1_200_000,
            pacing_bps: 6_000_000,
            rtt_ms: Some(40),
            fraction_lost: Some(5),
            reported_received: 9_000,
            reported_lost: 12,
            probe_packets: 120,
            probe_bytes: 33_000,
            forwarded: 5000,
            forward_drops: BTreeMap::from([("not_current_layer".into(), 9000)]),
            subscriptions: vec![SubscriptionStats {
                subscription: SubscriptionId(30),
                track: TrackId(10),
                kind: MediaKind::Video,
                allocated_layer: Some(2),
                current_layer: Some(1),
                target_layer: 2,
                paused: false,
                muted: false,
                layer_bps: vec![150_000, 480_000, 1_400_000],
            }],
            tracks: vec![PublishedTrackStats {
                track: TrackId(11),
                layer_bps: vec![Some(40_000)],
            }],
            ..SessionStatsReport::unplaced(SessionId(1))
        }),
        ReplyOk::SessionStats(SessionStatsReport::unplaced(SessionId(2))),
    ];
    let mut out: Vec<ReplyResult> = oks.into_iter().map(ReplyResult::Ok).collect();
    for code in [
        ErrorCode::Invalid,
        ErrorCode::Rejected,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ] {
        out.push(ReplyResult::Error(
            ErrorBody::new(code, "nope").with_field("ice.ufrag"),
        ));
    }
    out
}

fn all_messages() -> Vec<Message> {
    let mut msgs = vec![
        Message::Hello(Hello::control("ctl-1")),
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Dataplane,
            instance: "dp-a".into(),
            shards: 4,
            media_addrs: vec![
                "127.0.0.1:3478".parse().unwrap(),
                "[::1]:3478".parse().unwrap(),
            ],
            fingerprint: Some(format!("sha-256 {}", ["0F"; 32].join(":"))),
        }),
        Message::Error(ErrorBody::new(ErrorCode::Invalid, "bye").with_field("version")),
    ];
    msgs.extend(commands().into_iter().enumerate().map(|(i, command)| {
        Message::Request(Request {
            id: i as u64,
            command,
        })
    }));
    msgs.extend(replies().into_iter().enumerate().map(|(i, result)| {
        Message::Reply(Reply {
            id: i as u64,
            result,
        })
    }));
    msgs.extend(notifications().into_iter().enumerate().map(|(i, event)| {
        Message::Event(Event {
            seq: i as u64,
            event,
        })
    }));
    msgs
}

fn type_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn samples_cover_every_command_and_notification_type() {
    let seen: BTreeSet<String> = commands().iter().map(type_of).collect();
    let all: BTreeSet<String> = Command::TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, all);
    let seen: BTreeSet<String> = notifications().iter().map(type_of).collect();
    let all: BTreeSet<String> = Notification::TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, all);
}

#[test]
fn every_message_round_trips_byte_at_a_time() {
    let msgs = all_messages();
    let mut wire = Vec::new();
    for msg in &msgs {
        encode_frame(msg, &mut wire).unwrap();
    }
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    for byte in &wire {
        decoder.push(std::slice::from_ref(byte));
        while let Some(msg) = decoder.next_frame().unwrap() {
            decoded.push(msg);
        }
    }
    assert_eq!(decoded, msgs);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn valid_sample_commands_pass_validation() {
    for cmd in commands() {
        assert_eq!(cmd.validate(), Ok(()), "{cmd:?}");
    }
}

fn raw_frame(version: u8, json: &str) -> Vec<u8> {
    let mut out = ((json.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(version);
    out.extend_from_slice(json.as_bytes());
    out
}

fn decode_one(bytes: &[u8]) -> Result<Option<Message>, ProtoError> {
    let mut decoder = FrameDecoder::new();
    decoder.push(bytes);
    decoder.next_frame()
}

#[test]
fn oversized_frame_is_fatal_before_its_body_arrives() {
    let err = decode_one(&(MAX_FRAME_LEN + 1).to_be_bytes()).unwrap_err();
    assert_eq!(
        err,
        ProtoError::TooLarge {
            len: u64::from(MAX_FRAME_LEN) + 1
        }
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    // Exactly the limit is fine as far as framing goes (the JSON then fails).
    let mut at_limit = MAX_FRAME_LEN.to_be_bytes().to_vec();
    at_limit.push(PROTOCOL_VERSION);
    at_limit.resize(4 + MAX_FRAME_LEN as usize, b' ');
    assert!(matches!(
        decode_one(&at_limit),
        Err(ProtoError::BadMessage { .. })
    ));
}

#[test]
fn encode_refuses_frames_over_the_limit() {
    let big = Message::Error(ErrorBody::new(
        ErrorCode::Internal,
        "x".repeat(MAX_FRAME_LEN as usize),
    ));
    let mut out = vec![7];
    assert!(matches!(
        encode_frame(&big, &mut out),
        Err(ProtoError::TooLarge { .. })
    ));
    assert_eq!(out, [7]);
}

#[test]
fn bad_version_is_fatal_and_names_version() {
    let other = PROTOCOL_VERSION + 1;
    let err = decode_one(&raw_frame(other, r#"{"type":"hello"}"#)).unwrap_err();
    assert_eq!(err, ProtoError::Version { got: other });
    assert!(err.is_fatal());
    assert_eq!(err.to_error_body().field.as_deref(), Some("version"));
}

fn bad(json: &str) -> (Option<u64>, Option<String>, String) {
    match decode_one(&raw_frame(PROTOCOL_VERSION, json)) {
        Err(ProtoError::BadMessage { id, field, detail }) => (id, field, detail),
        other => panic!("expected BadMessage for {json}, got {other:?}"),
    }
}

#[test]
fn bad_json_and_non_objects_are_reported() {
    let (id, field, detail) = bad(r#"{"type":"request","id":1,"#);
    assert_eq!((id, field), (None, None));
    assert!(detail.contains("invalid JSON"), "{detail}");
    let (_, _, detail) = bad("[1,2]");
    assert!(detail.contains("not a JSON object"), "{detail}");
    let mut frame = raw_frame(PROTOCOL_VERSION, "{}");
    frame[5] = 0xff;
    assert!(
        matches!(decode_one(&frame), Err(ProtoError::BadMessage { detail, .. }) if detail.contains("UTF-8"))
    );
}

#[test]
fn unknown_types_name_the_tag_field() {
    let (_, field, detail) = bad(r#"{"type":"helo"}"#);
    assert_eq!(field.as_deref(), Some("type"));
    assert!(detail.contains("`helo`"), "{detail}");
    let (id, field, detail) =
        bad(r#"{"type":"request","id":7,"command":{"type":"creat_session"}}"#);
    assert_eq!((id, field.as_deref()), (Some(7), Some("command.type")));
    assert!(detail.contains("creat_session"), "{detail}");
    let (_, field, _) = bad(r#"{"type":"event","seq":1,"event":{"type":"boom"}}"#);
    assert_eq!(field.as_deref(), Some("event.type"));
    let (_, field, _) = bad(r#"{"type":"request","id":7}"#);
    assert_eq!(field.as_deref(), Some("command"));
    let (_, field, _) = bad(r#"{"id":7}"#);
    assert_eq!(field.as_deref(), Some("type"));
}

#[test]
fn unknown_and_missing_fields_are_named() {
    let mut v = serde_json::to_value(Message::Request(Request {
        id: 3,
        command: Command::CreateSession(create_session()),
    }))
    .unwrap();
    v["command"]["ice"]["ufarg"] = "typo".into();
    let (id, field, detail) = bad(&v.to_string());
    assert_eq!((id, field.as_deref()), (Some(3), Some("ufarg")));
    assert!(detail.contains("unknown field"), "{detail}");

    let (_, field, _) =
        bad(r#"{"type":"request","id":4,"command":{"type":"ping","verbose":true}}"#);
    assert_eq!(field.as_deref(), Some("verbose"));
    let (_, field, _) = bad(r#"{"type":"request","id":4,"extra":1,"command":{"type":"ping"}}"#);
    assert_eq!(field.as_deref(), Some("extra"));
    let (_, field, detail) =
        bad(r#"{"type":"request","id":5,"command":{"type":"set_muted","track":1}}"#);
    assert_eq!(field.as_deref(), Some("muted"));
    assert!(detail.contains("missing field"), "{detail}");
}

#[test]
fn bad_values_are_reported_with_the_request_id() {
    let (id, _, detail) =
        bad(r#"{"type":"request","id":8,"command":{"type":"set_muted","track":1,"muted":"yes"}}"#);
    assert_eq!(id, Some(8));
    assert!(detail.contains("invalid type"), "{detail}");
}

/// A tiny dataplane: answers Ping with Pong, CloseSession with an event and then the reply,
/// CreateSession after validation, everything else with `rejected`.
fn serve_one(listener: UnixListener) {
    let (stream, _) = listener.accept().unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Dataplane,
        instance: "test-dp".into(),
        shards: 2,
        media_addrs: vec!["127.0.0.1:3478".parse().unwrap()],
        fingerprint: None,
    };
    let mut conn = ControlConn::new(stream, &hello).unwrap();
    for _ in 0..10_000 {
        conn.fill(Some(Duration::from_millis(50))).unwrap();
        while let Some(msg) = conn.next_message() {
            let Message::Request(Request { id, command }) = msg else {
                continue;
            };
            let result = match command {
                Command::Ping {} => Ok(ReplyOk::Pong {}),
                Command::CloseSession { session } => {
                    conn.notify(Notification::IceDisconnected { session });
                    conn.notify(Notification::SessionClosed {
                        session,
                        reason: CloseReason::Requested,
                    });
                    Ok(ReplyOk::Done {})
                }
                Command::CreateSession(c) => match Command::CreateSession(c).validate() {
                    Ok(()) => Ok(ReplyOk::SessionCreated {
                        shard: 1,
                        local_candidates: vec![],
                    }),
                    Err(invalid) => Err(invalid.into()),
                },
                _ => Err(ErrorBody::new(ErrorCode::Rejected, "not in this test")),
            };
            conn.reply(id, result);
        }
        conn.flush().unwrap();
        if conn.is_done() {
            return;
        }
    }
    panic!("test server ran out of iterations");
}

fn temp_socket() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let listener = UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

#[test]
fn client_and_server_exchange_requests_replies_and_interleaved_events() {
    let (_dir, path, listener) = temp_socket();
    let server = thread::spawn(move || serve_one(listener));

    let mut client = ControlClient::connect(&path).unwrap();
    let theirs = client.hello(Hello::control("test-ctl")).unwrap();
    assert_eq!((theirs.role, theirs.shards), (Role::Dataplane, 2));

    assert_eq!(client.request(Command::Ping {}).unwrap(), ReplyOk::Pong {});
    // The events arrive before the reply; the client buffers them.
    assert_eq!(
        client
            .request(Command::CloseSession {
                session: SessionId(5)
            })
            .unwrap(),
        ReplyOk::Done {}
    );
    let first = client.next_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(
        (first.seq, first.event),
        (
            0,
            Notification::IceDisconnected {
                session: SessionId(5)
            }
        )
    );
    let second = client.next_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(second.seq, 1);
    assert_eq!(client.next_event(Duration::from_millis(20)).unwrap(), None);

    let mut bad = create_session();
    bad.ice.ufrag = String::new();
    match client.request(Command::CreateSession(bad)) {
        Err(ControlError::Failed(body)) => {
            assert_eq!(
                (body.code, body.field.as_deref()),
                (ErrorCode::Invalid, Some("ice.ufrag"))
            )
        }
        other => panic!("expected invalid ice.ufrag, got {other:?}"),
    }
    match client.request(Command::Stats {}) {
        Err(ControlError::Failed(body)) => assert_eq!(body.code, ErrorCode::Rejected),
        other => panic!("expected rejected, got {other:?}"),
    }
    drop(client);
    server.join().unwrap();
}

#[test]
fn server_answers_undecodable_request_and_closes_on_bad_version() {
    use std::io::{Read, Write};
    let (_dir, path, listener) = temp_socket();
    let server = thread::spawn(move || serve_one(listener));
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut wire = Vec::new();
    encode_frame(&Message::Hello(Hello::control("raw")), &mut wire).unwrap();
    wire.extend(raw_frame(
        PROTOCOL_VERSION,
        r#"{"type":"request","id":42,"command":{"type":"pnig"}}"#,
    ));
    wire.extend(raw_frame(9, "{}"));
    raw.write_all(&wire).unwrap();

    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let n = raw.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        while let Some(msg) = decoder.next_frame().unwrap() {
            got.push(msg);
        }
    }
    assert!(matches!(&got[0], Message::Hello(h) if h.role == Role::Dataplane));
    match &got[1] {
        Message::Reply(Reply {
            id: 42,
            result: ReplyResult::Error(e),
        }) => {
            assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::Invalid, Some("command.type"))
            )
        }
        other => panic!("expected invalid reply to 42, got {other:?}"),
    }
    match &got[2] {
        Message::Error(e) => assert_eq!(e.field.as_deref(), Some("version")),
        other => panic!("expected error frame, got {other:?}"),
    }
    assert_eq!(got.len(), 3);
    server.join().unwrap();
}

#[test]
fn server_requires_hello_first() {
    let (_dir, path, listener) = temp_socket();
    let server = thread::spawn(move || serve_one(listener));
    let mut client = ControlClient::connect(&path).unwrap();
    // Skip our hello: the first request gets an Error frame and the connection closes.
    match client.request(Command::Ping {}) {
        // The dataplane's own hello arrives first and is a protocol violation for `request`.
        Err(ControlError::Unexpected(_)) | Err(ControlError::Closed(_)) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    match client.next_event(Duration::from_secs(5)) {
        Err(ControlError::Closed(body)) => assert_eq!(body.field.as_deref(), Some("type")),
        other => panic!("expected the Error frame, got {other:?}"),
    }
    server.join().unwrap();
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoder(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut decoder = FrameDecoder::new();
        for chunk in &chunks {
            decoder.push(chunk);
            for _ in 0..8 {
                match decoder.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => break,
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn random_json_payloads_never_panic(version in 0u8..3, body in "\\PC{0,200}") {
        let _ = decode_one(&raw_frame(version, &body));
        let _ = decode_message(body.as_bytes());
    }
}
