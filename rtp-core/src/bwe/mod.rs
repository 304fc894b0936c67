//! Bandwidth estimation: transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01),
//! the send-side delay- and loss-based estimator (draft-ietf-rmcat-gcc-02 §5, §6),
//! REMB input, and the stream allocator that turns a budget into simulcast layers.

mod twcc;

pub use twcc::{
    decode_fci, encode_feedback, EncodedFeedback, TwccError, TwccPacket, TwccSummary,
    DELTA_TICK_US, REFERENCE_TICK_US, RTPFB_PT, TWCC_FMT,
};
