//! Two [`DataChannels`] wired back to back (SCTP packets passed directly,
//! no DTLS), for what the session-level scenario tests cannot reach through
//! the public API: a peer that breaks DCEP's rules.

use std::time::{Duration, Instant};

use sctp_proto::PayloadProtocolIdentifier as Ppi;

use super::dcep::DcepOpen;
use super::{ChannelConfig, ChannelId, DataChannels, DataConfig, DataEvent, Reliability};

struct Pipe {
    server: DataChannels,
    client: DataChannels,
    now: Instant,
}

impl Pipe {
    fn new() -> Self {
        #[allow(clippy::disallowed_methods)] // the one clock read a test needs
        let now = Instant::now();
        let cfg = DataConfig::default();
        let mut p = Self {
            server: DataChannels::new(cfg, false, now).expect("server"),
            client: DataChannels::new(cfg, true, now).expect("client"),
            now,
        };
        p.server.on_dtls_connected();
        p.client.on_dtls_connected();
        p.run(Duration::from_secs(1));
        assert!(p.server.is_connected() && p.client.is_connected());
        p
    }

    /// Moves packets both ways and runs timers for `span`.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            for _ in 0..1000 {
                let mut moved = false;
                while let Some(pkt) = self.client.poll_packet(self.now) {
                    self.server.handle_input(self.now, pkt.to_vec());
                    moved = true;
                }
                while let Some(pkt) = self.server.poll_packet(self.now) {
                    self.client.handle_input(self.now, pkt.to_vec());
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            self.now += Duration::from_millis(10);
            self.server.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
        }
    }

    /// Writes `payload` with `ppi` on the client's stream `id`, bypassing DCEP.
    fn raw(&mut self, id: u16, ppi: Ppi, payload: &[u8]) {
        let a = self.client.sctp.assoc().expect("association");
        let _ = a.open_stream(id, Ppi::Binary);
        a.stream(id)
            .expect("stream")
            .write_with_ppi(payload, ppi)
            .expect("written");
    }
}

fn events(d: &mut DataChannels) -> Vec<DataEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

fn open_bytes(label: &str) -> Vec<u8> {
    let mut b = Vec::new();
    DcepOpen {
        ordered: true,
        reliability: Reliability::Reliable,
        priority: 256,
        label,
        protocol: "",
    }
    .write(&mut b);
    b
}

#[test]
fn an_open_with_the_servers_parity_is_refused() {
    let mut p = Pipe::new();
    events(&mut p.server);
    // The client (DTLS client) must use even ids; 3 is the server's.
    p.raw(3, Ppi::Dcep, &open_bytes("odd"));
    p.raw(4, Ppi::Dcep, &open_bytes("even"));
    p.run(Duration::from_secs(1));
    let opened: Vec<DataEvent> = events(&mut p.server);
    assert!(
        matches!(&opened[..], [DataEvent::ChannelOpen { id: ChannelId(4), label, .. }] if label == "even")
    );
    let st = p.server.stats();
    assert_eq!((st.drop_dcep, st.channels_refused), (1, 1));
}

#[test]
fn malformed_dcep_and_unknown_ppids_are_dropped_and_counted() {
    let mut p = Pipe::new();
    // A truncated OPEN: the channel is refused.
    p.raw(6, Ppi::Dcep, &open_bytes("cut")[..10]);
    // A valid channel, then garbage on it: a second OPEN, an unknown PPID.
    p.raw(8, Ppi::Dcep, &open_bytes("ok"));
    p.raw(8, Ppi::Dcep, &open_bytes("again"));
    p.raw(8, Ppi::Unknown, b"what");
    p.raw(8, Ppi::String, b"fine");
    p.run(Duration::from_secs(1));
    let mut buf = [0u8; 64];
    let m = p.server.poll_data(&mut buf).expect("the good message");
    assert_eq!(
        (m.channel, m.binary, &buf[..m.len]),
        (ChannelId(8), false, &b"fine"[..])
    );
    assert!(p.server.poll_data(&mut buf).is_none());
    let st = p.server.stats();
    println!("{st:?}");
    assert_eq!(st.drop_dcep, 2, "truncated OPEN, OPEN on an open channel");
    assert_eq!(st.drop_unknown_ppid, 1);
    assert_eq!(st.channels_refused, 1);
}

#[test]
fn user_data_before_the_ack_opens_the_channel() {
    let mut p = Pipe::new();
    let id = p.server.open(ChannelConfig::lossy("early")).expect("open");
    assert_eq!(id, ChannelId(1), "the DTLS server's first id");
    let now = p.now;
    while let Some(pkt) = p.server.poll_packet(now) {
        p.client.handle_input(now, pkt.to_vec());
    }
    // The client's ACK is lost; its first message (unordered) arrives.
    while p.client.poll_packet(now).is_some() {}
    p.client.send(id, true, b"before the ack").expect("send");
    while let Some(pkt) = p.client.poll_packet(now) {
        p.server.handle_input(now, pkt.to_vec());
    }
    let mut buf = [0u8; 64];
    let m = p
        .server
        .poll_data(&mut buf)
        .expect("the message is the ACK");
    assert_eq!((m.channel, &buf[..m.len]), (id, &b"before the ack"[..]));
    // The retransmitted ACK then arrives on an open channel and is ignored.
    p.run(Duration::from_secs(3));
    assert!(p.server.poll_data(&mut buf).is_none());
    assert_eq!(p.server.stats().drop_dcep, 1);
}

#[test]
fn a_short_buffer_drops_the_message_and_counts_it() {
    let mut p = Pipe::new();
    let id = p.client.open(ChannelConfig::reliable("big")).expect("open");
    p.run(Duration::from_secs(1));
    p.client.send(id, true, &[1; 100]).expect("send");
    p.client.send(id, true, &[2; 10]).expect("send");
    p.run(Duration::from_secs(1));
    let mut small = [0u8; 50];
    let m = p.server.poll_data(&mut small).expect("the one that fits");
    assert_eq!(&small[..m.len], &[2; 10]);
    assert_eq!(p.server.stats().drop_truncated, 1);
}

#[test]
fn dtls_closing_closes_every_channel_once() {
    let mut p = Pipe::new();
    let a = p.client.open(ChannelConfig::reliable("a")).expect("a");
    let b = p.client.open(ChannelConfig::lossy("b")).expect("b");
    p.run(Duration::from_secs(1));
    events(&mut p.client);
    p.client.on_dtls_closed();
    p.client.on_dtls_closed();
    let ev = events(&mut p.client);
    assert_eq!(
        ev,
        [
            DataEvent::ChannelClosed { id: a },
            DataEvent::ChannelClosed { id: b },
            DataEvent::Closed
        ]
    );
    assert!(p.client.open(ChannelConfig::reliable("c")).is_err());
}
