//! ICE-TCP counters of one worker.

/// Counters, exported in the worker's snapshot as `tcp_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub accepted: u64,
    /// Accepted and closed at once: the worker had `max_conns` connections.
    pub refused_full: u64,
    pub accept_errors: u64,
    /// First frame not a STUN check for a known session.
    pub closed_garbage: u64,
    /// A frame longer than a pool buffer, or empty.
    pub closed_bad_frame: u64,
    /// No validated check within `stun_timeout`.
    pub closed_no_stun: u64,
    /// Bound, then silent for `idle_timeout`.
    pub closed_idle: u64,
    /// The peer closed it, or a read/write failed.
    pub closed_peer: u64,
    /// Its session went away.
    pub closed_session: u64,
    pub handed_over: u64,
    pub adopted: u64,
    /// A hand-over whose target's queue was full (the connection was closed).
    pub handoff_full: u64,
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames that did not fit in a connection's send queue.
    pub tx_media_dropped: u64,
    pub tx_control_dropped: u64,
    /// Frames for a peer with no connection (closed meanwhile).
    pub tx_no_conn: u64,
}
