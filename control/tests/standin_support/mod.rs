//! A stand-in dataplane for the control-daemon tests that assert which commands the daemon sends
//! and when (room_concurrency, data_rights): it speaks the real control-socket protocol
//! (`sluice-proto` frames, the hello, replies) on the daemon's Unix socket and gives every request
//! the plain answer of [`answer`]; each test decides when a reply goes out. Tests of what a
//! dataplane does with the commands use a real one (tests/tests/node_support, tests/e2e).
#![allow(dead_code)]

use sluice_proto::{
    encode_frame, Candidate, CandidateProtocol, Command, FrameDecoder, Hello, Message, Reply,
    ReplyOk, ReplyResult, Request, Role as ProtoRole, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

/// Where a test sends the stand-in's replies (any order, any time).
pub type Out = mpsc::UnboundedSender<Message>;

/// The immediate answer to `command`: a session on shard 0 with one loopback candidate, empty
/// lists, `pong`, and `done` for everything else.
pub fn answer(command: &Command) -> ReplyOk {
    match command {
        Command::CreateSession(_) => ReplyOk::SessionCreated {
            shard: 0,
            local_candidates: vec![Candidate {
                foundation: "1".into(),
                addr: "127.0.0.1:9".parse().unwrap(),
                protocol: CandidateProtocol::Udp,
                priority: 2_130_706_431,
            }],
        },
        Command::Ping {} => ReplyOk::Pong {},
        Command::ListSessions { .. } => ReplyOk::Sessions {
            sessions: vec![],
            next: None,
        },
        Command::ListTracks { .. } => ReplyOk::Tracks {
            tracks: vec![],
            next: None,
        },
        Command::ListSubscriptions { .. } => ReplyOk::Subscriptions {
            subscriptions: vec![],
            next: None,
        },
        _ => ReplyOk::Done {},
    }
}

/// Serves the first connection on `listener`: sends the hello as `instance`, then calls
/// `on_request(request, reply, out)` for every request, `reply` being [`answer`]'s, ready to send
/// on `out`.
pub fn serve(
    listener: UnixListener,
    instance: &'static str,
    mut on_request: impl FnMut(Request, Message, &Out) + Send + 'static,
) {
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (mut rd, mut wr) = sock.into_split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let mut buf = Vec::new();
                encode_frame(&m, &mut buf).unwrap();
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
        let _ = out_tx.send(Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: ProtoRole::Dataplane,
            instance: instance.into(),
            shards: 1,
            media_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            fingerprint: Some(format!("sha-256 {}", vec!["AB"; 32].join(":"))),
        }));
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Ok(Some(msg)) = decoder.next_frame() {
                let Message::Request(req) = msg else { continue };
                let reply = Message::Reply(Reply {
                    id: req.id,
                    result: ReplyResult::Ok(answer(&req.command)),
                });
                on_request(req, reply, &out_tx);
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.push(&buf[..n]),
            }
        }
    });
}
