//! The data-channel section (`m=application … UDP/DTLS/SCTP webrtc-datachannel`, RFC 8841,
//! RFC 8831 §6): SCTP over the bundle's DTLS association, answered with our SCTP port and the
//! largest message we accept. One per session: a second data section is refused.

use super::answer::transport_attributes;
use super::local::LocalParams;
use super::model::{Formats, MediaKind, MediaSection};
use super::negotiated::{AcceptedData, DtlsRole, RejectReason};

/// The SCTP port we answer (RFC 8841 §5: any; the browsers' and our own default).
pub const SCTP_PORT: u16 = 5000;
/// Our `a=max-message-size`: the dataplane relay's limit (`dataplane::shard::data::MAX_MESSAGE`).
pub const MAX_MESSAGE_SIZE: u64 = 65_536;
/// The only SCTP-over-DTLS profile WebRTC uses (RFC 8841 §4.1; `TCP/DTLS/SCTP` for ICE-TCP).
const PROTOS: [&str; 2] = ["UDP/DTLS/SCTP", "TCP/DTLS/SCTP"];
const FORMAT: &str = "webrtc-datachannel";

/// Why the data section `m` cannot be answered, if it cannot (`accepted`: we already took one;
/// `local.data_channels`: this session may get them).
pub(super) fn reject_reason(
    m: &MediaSection,
    local: &LocalParams,
    accepted: bool,
) -> Option<RejectReason> {
    if !local.data_channels {
        return Some(RejectReason::DataChannelsUnsupported);
    }
    if !PROTOS.contains(&m.proto.as_str()) {
        return Some(RejectReason::UnsupportedProto(m.proto.clone()));
    }
    if !matches!(&m.formats, Formats::Other(f) if f.iter().any(|t| t == FORMAT)) {
        return Some(RejectReason::UnsupportedProto(format!(
            "{} (no {FORMAT})",
            m.proto
        )));
    }
    if accepted {
        return Some(RejectReason::SecondDataSection);
    }
    None
}

/// Our answer to the data section `m`, and what the dataplane needs of it.
pub(super) fn answer_section(
    m: &MediaSection,
    local: &LocalParams,
    mid: &str,
    role: DtlsRole,
) -> (MediaSection, AcceptedData) {
    let mut s = MediaSection::new(
        MediaKind::Application,
        9,
        &m.proto,
        Formats::Other(vec![FORMAT.into()]),
    );
    transport_attributes(&mut s, local, role);
    s.rtcp_mux = false;
    s.mid = Some(mid.into());
    s.sctp_port = Some(SCTP_PORT);
    s.max_message_size = Some(MAX_MESSAGE_SIZE);
    let data = AcceptedData {
        mid: mid.into(),
        remote_max_message_size: remote_max_message_size(m.max_message_size),
    };
    (s, data)
}

/// The peer's limit as the dataplane takes it: absent → `None` (64 KiB, RFC 8841 §6.1), 0 → any
/// size, values beyond u32 (Firefox says 1073741823, some stacks 2^32 or more) → `Some(0)`.
fn remote_max_message_size(v: Option<u64>) -> Option<u32> {
    v.map(|v| u32::try_from(v).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_limits_map_to_the_dataplane_field() {
        assert_eq!(remote_max_message_size(None), None);
        assert_eq!(remote_max_message_size(Some(262_144)), Some(262_144));
        assert_eq!(remote_max_message_size(Some(0)), Some(0));
        assert_eq!(remote_max_message_size(Some(1 << 40)), Some(0));
    }
}
