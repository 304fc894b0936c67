//! The SFU-side figures of `sluice-bench fanout` (the workers' receive → kernel histograms, the
//! pacer's queueing; issue 19's targets are read from them) cover the generator's measurement
//! window, as its end-to-end figures do — not the warm-up (the first keyframe, the start
//! estimate's pacing) or the drain. Before, they were differenced from a snapshot taken before
//! the generator started to the last one: at 400 WebRTC subscribers, 120,000 audio copies
//! against the window's 100,000, and the warm-up's copies decided the p99.
//!
//! Plain RTP and WebRTC (`--cipher gcm`: the generator thread asks for the snapshots), 6
//! subscribers, 1 s warm-up, 2 s window: the SFU's audio count must be at most the window's
//! and one stats interval (a snapshot may arrive late), and at least the window's less two and
//! a half intervals (each edge's snapshot is up to one interval inside it). The old span, with
//! the warm-up and the drain, counts 900 against the window's 600.

use std::time::Duration;

use bench::fanout::{self, Cipher, FanoutConfig, Sfu, STATS_INTERVAL};
use sluice_dataplane::sys::affinity;

const SUBSCRIBERS: u32 = 6;
/// The generator's audio: 50 packets/s per subscriber.
const AUDIO_PPS: f64 = 50.0;

#[test]
fn the_sfu_side_figures_cover_the_measurement_window() {
    for cipher in [Cipher::None, Cipher::Gcm] {
        let cores = affinity::online_cores().expect("cores");
        let mut cfg = FanoutConfig::default_for(&cores, SUBSCRIBERS, Duration::from_secs(2));
        cfg.warmup = Duration::from_secs(1);
        cfg.cipher = cipher;
        let mut sfu = Sfu::start(&cfg).expect("dataplane starts");
        let r = fanout::run(&mut sfu, &cfg).expect("fanout");
        sfu.stop();
        let sfu_audio = r.sfu_latency().total[0].packets as f64;
        let window_audio = r.gen.latency_audio.count() as f64;
        let per_interval = AUDIO_PPS * STATS_INTERVAL.as_secs_f64() * f64::from(SUBSCRIBERS);
        println!(
            "{cipher:?}: audio copies in the window {window_audio}, counted by the SFU {sfu_audio} \
             (one stats interval: {per_interval}); loss {:.2} %",
            r.loss() * 100.0
        );
        assert!(window_audio > 0.0, "{cipher:?}: no audio in the window");
        // One interval of slack: a snapshot can reach the bench a little after it was sent.
        assert!(
            sfu_audio <= window_audio + per_interval,
            "{cipher:?}: the SFU-side histogram counted {sfu_audio} audio copies, the window \
             has {window_audio}: it includes the warm-up or the drain"
        );
        assert!(
            sfu_audio >= window_audio - 2.5 * per_interval,
            "{cipher:?}: the SFU-side histogram counted {sfu_audio} audio copies of the \
             window's {window_audio}"
        );
    }
}
