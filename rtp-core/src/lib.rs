//! rtp-core: Sluice's sans-IO media core.
//!
//! Pure state machines over caller-owned buffers: no sockets, threads, locks,
//! callbacks or clock reads. Every time-dependent call takes `now: Instant`.
//! Modules are named after protocol nouns:
//!
//! - [`packet`]: zero-copy RTP/RTCP views and in-place writers, RFC 7983 demux.
//! - [`stun`]: the STUN message parse/build subset ICE-lite needs.
//! - [`srtp`]: SRTP/SRTCP contexts, in-place protect/unprotect (RFC 3711, RFC 7714).
//! - [`nack`]: loss detection, NACK generation, the packet history, RTX (RFC 4585, RFC 4588).
//! - [`forward`]: per-subscriber forwarding decisions and header rewrites.
//! - [`pacer`]: per-egress leaky-bucket pacer with priority classes.
//! - [`bwe`]: transport-cc feedback, delay- and loss-based estimation, the layer allocator.
//! - [`stats`]: per-stream counters, loss, jitter, RTT, SR/RR generation.
//! - [`datachannel`]: SCTP over DTLS and DCEP for WebRTC data channels.
//! - [`net`]: transport addresses (UDP, or a TCP connection carrying RFC 4571 frames).
#![forbid(unsafe_code)]

pub mod budget;
pub mod bwe;
pub mod datachannel;
pub mod dtls;
pub mod forward;
pub mod ice;
pub mod nack;
pub mod net;
pub mod pacer;
pub mod packet;
pub mod session;
pub mod srtp;
pub mod stats;
pub mod stun;
pub mod time;

pub use packet::{demux, Demuxed, ParseError, RtpView, RtpViewMut};
