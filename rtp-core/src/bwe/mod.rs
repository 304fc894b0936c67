//! Bandwidth estimation: transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01),
//! the send-side delay- and loss-based estimator (draft-ietf-rmcat-gcc-02 §5, §6),
//! REMB input, and the stream allocator that turns a budget into simulcast layers.
//!
//! - `twcc`: FCI decode / RTCP transport-cc encode.
//! - `twcc_rx`: [`TwccReceiver`], feedback generation towards publishers.
//! - `send_history`, `trendline`, `aimd`, `loss`, `estimator`: [`SendSideBwe`].
//! - `probe`: [`Prober`], probe clusters and their results (inside [`SendSideBwe`]).
//! - `rate`: [`RateMeter`], windowed byte rates (layer costs, what is sent).
//! - `allocator`: [`Allocator`], budget → layer per track.
//! - `shed`: [`Shedder`], a trunk's estimate → which relays flow (D109).
//!
//! The estimator (with its prober) and the allocator know nothing of sessions: a node-to-node
//! trunk can drive them the same way a subscriber's session does (docs/congestion.md).

mod aimd;
mod allocator;
mod estimator;
mod loss;
mod probe;
mod rate;
mod send_history;
mod shed;
mod trendline;
mod twcc;
mod twcc_rx;

pub use allocator::{Allocator, AllocatorConfig, Layer, TrackDemand, MAX_LAYERS};
pub use estimator::{EstimateSource, SendSideBwe, SendSideBweConfig, MIN_HISTORY};
pub use probe::{ProbeConfig, ProbeStats, Prober};
pub use rate::RateMeter;
pub use shed::{RelayLoad, ShedConfig, Shedder};
pub use trendline::{BandwidthUsage, Trendline, TrendlineConfig};
pub use twcc::{
    decode_fci, encode_feedback, EncodedFeedback, TwccError, TwccPacket, TwccSummary,
    DELTA_TICK_US, REFERENCE_TICK_US, RTPFB_PT, TWCC_FMT,
};
pub use twcc_rx::{TwccReceiver, TwccReceiverConfig};
