//! Hybrid P2P/SFU topology (issue 8, seed 004 "Transition Mechanisms", seed 000 "Decision 2"):
//! which topology a room uses and how it moves between them.
//!
//! - [`HybridConfig`]: the policy knobs (`[hybrid]` in the config, overridable per room).
//! - [`ModePolicy`]: one room's sans-IO state machine (time passed in as unix millis):
//!   fed joins, leaves, acks, readiness, failures, SFU health and setting changes, it returns
//!   [`Action`]s for the server to carry out. It never touches sockets or the clock.
//! - [`turn`]: TURN REST credentials (coturn's `use-auth-secret` scheme).
//!
//! The wire messages are documented in docs/protocol.md, section "Hybrid P2P/SFU".

mod policy;
pub mod turn;

use serde::{Deserialize, Serialize};

pub use policy::{Action, Admission, MigrationInfo, ModeChange, ModePolicy, PolicyError};

/// The topology a room is in now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    P2p,
    Sfu,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::P2p => "p2p",
            Topology::Sfu => "sfu",
        }
    }
}

/// How clients switch (sent to them in `mode_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Keep the old path until the new one carries media, then close it after `grace_ms`.
    #[default]
    Gradual,
    /// Close the old path, then open the new one.
    HardCut,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Gradual => "gradual",
            Strategy::HardCut => "hard_cut",
        }
    }
}

/// Why a `mode_change` was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The participant count crossed `sfu_at` / `p2p_at`.
    Threshold,
    /// The host or the API changed the room's setting.
    Setting,
    /// The SFU side failed (a client's `mode_failed`, or the dataplane link down).
    SfuFailed,
    /// The P2P side failed while moving SFU → P2P (a client's `mode_failed`): back to SFU.
    P2pFailed,
    /// The migration did not finish within `migration_timeout_ms`.
    Timeout,
    /// A participant that cannot do P2P is in the room.
    P2pIncapable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Threshold => "threshold",
            Reason::Setting => "setting",
            Reason::SfuFailed => "sfu_failed",
            Reason::P2pFailed => "p2p_failed",
            Reason::Timeout => "timeout",
            Reason::P2pIncapable => "p2p_incapable",
        }
    }
}

/// Policy knobs; defaults from seed 004. Validated by [`HybridConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridConfig {
    /// Setting of rooms created without one: "sfu" keeps today's behaviour for every client.
    pub default_mode: crate::room::RoomMode,
    /// Auto: migrate P2P → SFU when participants >= `sfu_at`.
    pub sfu_at: u32,
    /// Auto: migrate SFU → P2P when participants <= `p2p_at` (hysteresis below `sfu_at`).
    pub p2p_at: u32,
    /// Auto: prepare the SFU (health check + `mode_prewarm`) when participants >= `prewarm_at`.
    pub prewarm_at: u32,
    /// A room pinned to P2P refuses joins beyond this many participants.
    pub p2p_limit: u32,
    /// No automatic migration sooner than this after the last one ended.
    pub cooldown_ms: u64,
    pub strategy: Strategy,
    /// Resend `mode_change` to participants that did not ack within this.
    pub ack_retry_ms: u64,
    /// A migration not complete by then is reset to the source mode.
    pub migration_timeout_ms: u64,
    /// Gradual: clients close the old path this long after switching.
    pub grace_ms: u64,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            default_mode: crate::room::RoomMode::Sfu,
            sfu_at: 8,
            p2p_at: 5,
            prewarm_at: 6,
            p2p_limit: 25,
            cooldown_ms: 10_000,
            strategy: Strategy::Gradual,
            ack_retry_ms: 3_000,
            migration_timeout_ms: 30_000,
            grace_ms: 5_000,
        }
    }
}

impl HybridConfig {
    /// Checks the relations between keys; `Err((key, message))` names the offending key
    /// without its `hybrid.` prefix (callers add it; messages already name other keys in full).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.sfu_at <= self.p2p_at {
            return Err((
                "sfu_at",
                format!(
                    "must be > hybrid.p2p_at (sfu_at = {}, p2p_at = {})",
                    self.sfu_at, self.p2p_at
                ),
            ));
        }
        if self.prewarm_at > self.sfu_at {
            return Err((
                "prewarm_at",
                format!(
                    "must be <= hybrid.sfu_at (prewarm_at = {}, sfu_at = {})",
                    self.prewarm_at, self.sfu_at
                ),
            ));
        }
        if self.p2p_limit < 2 {
            return Err(("p2p_limit", "must be at least 2".into()));
        }
        if self.ack_retry_ms == 0 {
            return Err(("ack_retry_ms", "must be > 0".into()));
        }
        if self.migration_timeout_ms <= self.ack_retry_ms {
            return Err((
                "migration_timeout_ms",
                "must be > hybrid.ack_retry_ms (a migration gets at least one resend)".into(),
            ));
        }
        Ok(())
    }
}
