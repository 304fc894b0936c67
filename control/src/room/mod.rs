//! Rooms, participants, tracks, roles and grants: the control daemon's
//! state machine ([`Rooms`]). Synchronous, no I/O, time passed in as unix
//! milliseconds; every mutating operation returns `Result<Vec<RoomEvent>,
//! RoomError>` and leaves the state untouched on `Err`.
//!
//! Role model (seed 000 "Decision 5", issue 4 §4):
//! - one **host** per room: shares the screen, grants/revokes control, ends
//!   the session; the role moves only to a controller ([`Rooms::transfer_host`]);
//! - at most `max_controllers` (default 3) **controllers**: view, request
//!   control, send input once granted — input is relayed to the host only;
//! - **viewers** view only and can never publish, whatever their grants say.
//!
//! Each role has a [`QualityTier`] (max bitrate, priority) for the
//! dataplane's allocator: [`Rooms::tier`].

mod error;
mod event;
mod model;
mod roles;
mod rooms;
mod tracks;

pub use error::RoomError;
pub use event::{DeleteReason, LeaveReason, RoomEvent, RoomEventKind};
pub use model::{
    Actor, ControlState, Join, Lifetimes, MediaKind, Participant, PublishTrack, QualityTier, Room,
    RoomConfig, RoomMode, RoomsConfig, SimulcastLayer, TierTable, Track,
};
pub use roles::InputRelay;
pub(crate) use rooms::{
    validate_identity, validate_name, MAX_IDENTITY, MAX_METADATA, MAX_ROOM_NAME,
};
pub use rooms::{Rooms, RoomsState};
pub(crate) use tracks::MAX_TRACKS_PER_PARTICIPANT;
