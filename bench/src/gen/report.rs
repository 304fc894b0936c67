//! What a generator run counts: [`GenReport`] (sent, received, loss, latency by kind, the
//! generator's and the SFU's CPU) and [`account`], which counts one received datagram.

use super::*;

/// What one generator run saw.
#[derive(Debug, Clone, Default)]
pub struct GenReport {
    pub window_s: f64,
    /// Packets the publishers sent in all (warm-up and window).
    pub sent: u64,
    /// Packets the publishers sent inside the window (all streams).
    pub sent_in_window: u64,
    /// Copies the subscribers should have received (`sent_in_window × S`).
    pub expected: u64,
    pub received: u64,
    pub received_bytes: u64,
    /// Datagrams outside the window, RTCP, and unknown.
    pub received_other: u64,
    pub rtcp: u64,
    pub tag_errors: u64,
    /// A tag whose stream is not the one the SSRC says.
    pub foreign: u64,
    pub pattern_checked: u64,
    pub pattern_errors: u64,
    pub latency_all: Histogram,
    pub latency_audio: Histogram,
    pub latency_video: Histogram,
    /// CPU seconds / window seconds of the busiest generator thread.
    pub busy: f64,
    /// The same for each generator thread, thread 0 (the publishers') first.
    pub busy_per_thread: Vec<f64>,
    /// Latest a frame was sent after its due time (the generator falling behind).
    pub max_send_lateness_ns: u64,
    /// Kernel drops at the subscribers' sockets (SO_RXQ_OVFL): loss the generator caused.
    pub rx_queue_drops: u64,
    pub tx_would_block: u64,
    /// SFU threads' CPU seconds inside the window.
    pub sfu_cpu: Vec<(u32, String, f64)>,
    /// The near and far subscribers counted apart (`Plan::near`).
    pub split: Option<SplitReport>,
}

impl GenReport {
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        (1.0 - self.received as f64 / self.expected as f64).max(0.0)
    }

    pub fn delivered_pps(&self) -> f64 {
        self.received as f64 / self.window_s.max(1e-9)
    }

    pub fn delivered_bps(&self) -> f64 {
        self.received_bytes as f64 * 8.0 / self.window_s.max(1e-9)
    }

    /// Adds a receive-only thread's counts to thread 0's report.
    pub(super) fn absorb(&mut self, o: &GenReport) {
        self.received += o.received;
        self.received_bytes += o.received_bytes;
        self.received_other += o.received_other;
        self.rtcp += o.rtcp;
        self.tag_errors += o.tag_errors;
        self.foreign += o.foreign;
        self.pattern_checked += o.pattern_checked;
        self.pattern_errors += o.pattern_errors;
        self.latency_all.merge(&o.latency_all);
        self.latency_audio.merge(&o.latency_audio);
        self.latency_video.merge(&o.latency_video);
        self.busy = self.busy.max(o.busy);
        self.busy_per_thread.extend_from_slice(&o.busy_per_thread);
        self.rx_queue_drops += o.rx_queue_drops;
        self.tx_would_block += o.tx_would_block;
        self.sent += o.sent;
        if let (Some(a), Some(b)) = (&mut self.split, &o.split) {
            a.absorb(b);
        }
    }
}

/// Counts one received datagram for subscriber `sub`; a counted window copy returns its
/// stream, per-stream sequence and latency (ns).
pub(super) fn account(
    data: &[u8],
    sub: u32,
    n_streams: u32,
    now_ns: u64,
    win_start: u64,
    win_end: u64,
    r: &mut GenReport,
) -> Option<(u32, u32, u64)> {
    if data.len() >= 2 && (200..=206).contains(&data[1]) {
        r.rtcp += 1;
        return None;
    }
    let Ok(view) = RtpView::parse(data) else {
        r.received_other += 1;
        return None;
    };
    let stream = view.ssrc().wrapping_sub(sub_ssrc(sub, 0));
    if stream >= n_streams {
        r.foreign += 1;
        return None;
    }
    let payload = view.payload();
    let tag = match Tag::read(payload) {
        Ok(t) => t,
        Err(_) => {
            r.tag_errors += 1;
            return None;
        }
    };
    if tag.stream != stream {
        r.foreign += 1;
        return None;
    }
    if !(win_start..win_end).contains(&tag.sent_ns) {
        r.received_other += 1;
        return None;
    }
    r.received += 1;
    r.received_bytes += data.len() as u64;
    let lat = now_ns.saturating_sub(tag.sent_ns);
    r.latency_all.record(lat);
    let kind = if stream.is_multiple_of(2) {
        r.latency_audio.record(lat);
        Kind::Audio
    } else {
        r.latency_video.record(lat);
        Kind::Video
    };
    if tag.seq.is_multiple_of(PATTERN_SAMPLE) {
        r.pattern_checked += 1;
        let off = body_offset(kind, payload);
        let body = payload.get(off..payload.len() - TAG_LEN).unwrap_or(&[]);
        if !check_pattern(body, tag.seq) {
            r.pattern_errors += 1;
        }
    }
    Some((stream, tag.seq, lat))
}
