//! What a [`TestPeer`](super::TestPeer) sends and receives on: its UDP socket, or one TCP
//! connection to the server's ICE-TCP port with RFC 4571 framing (a 16-bit big-endian length
//! before every STUN, DTLS, RTP and RTCP packet) — the active side of an RFC 6544 TCP pair, as a
//! browser whose UDP is blocked connects.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Longest frame RFC 4571's 16-bit length can carry.
const MAX_FRAME: usize = u16::MAX as usize;

#[derive(Debug)]
pub(super) enum Wire {
    Udp(UdpSocket),
    Tcp(TcpWire),
}

/// One TCP connection and the bytes read from it that do not make a whole frame yet.
#[derive(Debug)]
pub(super) struct TcpWire {
    stream: TcpStream,
    server: SocketAddr,
    rx: Vec<u8>,
    have: usize,
    tx: Vec<u8>,
}

impl Wire {
    /// Connects to `server`'s TCP port; `recv_buffer` sets `SO_RCVBUF` before connecting (a
    /// small one makes the connection back up soon when the peer reads slowly).
    pub(super) fn tcp(server: SocketAddr, recv_buffer: Option<usize>) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect(&server.into())?;
        socket.set_tcp_nodelay(true)?;
        Ok(Self::Tcp(TcpWire {
            stream: socket.into(),
            server,
            rx: vec![0; 2 * (2 + MAX_FRAME)],
            have: 0,
            tx: Vec::with_capacity(2 + MAX_FRAME),
        }))
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Udp(s) => s.local_addr(),
            Self::Tcp(t) => t.stream.local_addr(),
        }
    }

    pub(super) fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Self::Udp(s) => s.set_read_timeout(Some(t)),
            Self::Tcp(c) => c.stream.set_read_timeout(Some(t)),
        }
    }

    /// One datagram (UDP) or one whole frame (TCP, to the connection's server whatever `dst`).
    pub(super) fn send_to(&mut self, bytes: &[u8], dst: SocketAddr) -> io::Result<usize> {
        match self {
            Self::Udp(s) => s.send_to(bytes, dst),
            Self::Tcp(c) => {
                let len = u16::try_from(bytes.len())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
                c.tx.clear();
                c.tx.extend_from_slice(&len.to_be_bytes());
                c.tx.extend_from_slice(bytes);
                c.stream.write_all(&c.tx)?;
                Ok(bytes.len())
            }
        }
    }

    /// The next datagram or frame and where it came from; `WouldBlock`/`TimedOut` when the
    /// read timeout passes first. A TCP connection the server closed is `UnexpectedEof`.
    pub(super) fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Self::Udp(s) => s.recv_from(buf),
            Self::Tcp(c) => loop {
                if let Some(n) = c.take_frame(buf)? {
                    return Ok((n, c.server));
                }
                let n = c.stream.read(&mut c.rx[c.have..])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                c.have += n;
            },
        }
    }
}

impl TcpWire {
    /// Moves a whole buffered frame into `buf`, if there is one.
    fn take_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.have < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.rx[0], self.rx[1]]));
        if self.have < 2 + len {
            return Ok(None);
        }
        if len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame longer than the receive buffer",
            ));
        }
        buf[..len].copy_from_slice(&self.rx[2..2 + len]);
        self.rx.copy_within(2 + len..self.have, 0);
        self.have -= 2 + len;
        Ok(Some(len))
    }
}
