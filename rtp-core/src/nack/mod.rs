//! Loss recovery for RTP streams: extended sequence numbers (RFC 3550 §A.1),
//! receive-side loss detection and generic NACK scheduling (RFC 4585 §6.2.1),
//! the per-publisher packet history that answers NACKs, the per-subscriber
//! sequence map used to find what to resend, and RTX encapsulation
//! (RFC 4588 §4).
//!
//! Everything here preallocates at construction; per-packet calls do not
//! allocate.

mod generator;
mod history;
mod rtx;
mod seq;
mod seqmap;

/// Sequence numbers a session may NACK per second (and at once, from a full budget): far above
/// what a lossy subscriber asks for (20 % loss of a 20 Mbit/s stream, each number asked twice, is
/// under 1,000 a second), see [`crate::budget`].
pub const NACK_SEQS_PER_S: u32 = 4_000;

pub use generator::{NackConfig, NackGenerator, NackStats};
pub use history::{HistoryConfig, HistoryError, HistoryStats, PacketHistory};
pub use rtx::{rtx_decapsulate, rtx_encapsulate, RtxError};
pub use seq::SeqUnwrapper;
pub use seqmap::{SentEntry, SeqMap, SeqMapStats};
