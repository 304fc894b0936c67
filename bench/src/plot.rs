//! `--plot FILE.svg`: throughput, loss and p99 latency against subscribers, one panel each,
//! every SFU of the run as its own coloured line in all three. Hand-written SVG 1.1 (no plotting
//! dependency): linear axes with round tick steps, labelled, and a legend.

use std::fmt::Write;

use crate::ramp::Point;

const WIDTH: f64 = 760.0;
const PANEL_H: f64 = 200.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const GAP: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One SFU's ramp.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A metric drawn in one panel.
struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&Point) -> f64,
    /// A horizontal limit line (the ramp's criterion), if any.
    limit: Option<f64>,
}

/// Renders the chart.
pub fn render(title: &str, series: &[Series]) -> String {
    let panels = [
        Panel {
            title: "delivered packets/s",
            unit: "kpps",
            value: |p| p.delivered_pps / 1e3,
            limit: None,
        },
        Panel {
            title: "loss",
            unit: "%",
            value: |p| p.loss * 100.0,
            limit: Some(crate::ramp::MAX_LOSS * 100.0),
        },
        Panel {
            title: "p99 latency",
            unit: "ms",
            value: |p| p.p99_ms,
            limit: Some(crate::ramp::MAX_P99_MS),
        },
    ];
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 20.0;
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| f64::from(p.subscribers)))
        .fold(1.0, f64::max);
    let (x_step, x_top) = nice_axis(x_max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Legend, top right.
    for (i, s) in series.iter().enumerate() {
        let x = WIDTH - RIGHT - 160.0;
        let y = 14.0 + 14.0 * i as f64;
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            x + 26.0,
            y + 4.0,
            escape(&s.name)
        );
    }
    let plot_w = WIDTH - LEFT - RIGHT;
    for (k, panel) in panels.iter().enumerate() {
        let top = TOP + k as f64 * (PANEL_H + GAP);
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(panel.value))
            .chain(panel.limit)
            .fold(0.0, f64::max)
            .max(1e-9);
        let (y_step, y_top) = nice_axis(y_max);
        let px = |x: f64| LEFT + x / x_top * plot_w;
        let py = |y: f64| top + PANEL_H - y / y_top * PANEL_H;
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-weight="bold">{} ({})</text><rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#444"/>"##,
            top - 8.0,
            panel.title,
            panel.unit
        );
        // Y ticks and grid.
        let mut y = 0.0;
        while y <= y_top + y_step / 2.0 {
            let yy = py(y);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                yy + 4.0,
                fmt_tick(y, y_step)
            );
            y += y_step;
        }
        // X ticks.
        let mut x = 0.0;
        while x <= x_top + x_step / 2.0 {
            let xx = px(x);
            let _ = write!(
                svg,
                r##"<line x1="{xx}" y1="{}" x2="{xx}" y2="{}" stroke="#444"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"##,
                top + PANEL_H,
                top + PANEL_H + 5.0,
                top + PANEL_H + 18.0,
                fmt_tick(x, x_step)
            );
            x += x_step;
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">subscribers</text>"#,
            LEFT + plot_w / 2.0,
            top + PANEL_H + 34.0
        );
        if let Some(l) = panel.limit {
            let yy = py(l);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#999" stroke-dasharray="6 4"/><text x="{}" y="{}" text-anchor="end" fill="#777">limit {l}</text>"##,
                LEFT + plot_w,
                LEFT + plot_w - 4.0,
                yy - 4.0
            );
        }
        for (i, s) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let mut pts = s.points.clone();
            pts.sort_by_key(|p| p.subscribers);
            let line: Vec<String> = pts
                .iter()
                .map(|p| {
                    let v = (panel.value)(p).min(y_top);
                    format!("{:.1},{:.1}", px(f64::from(p.subscribers)), py(v))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                line.join(" ")
            );
            for p in &pts {
                let v = (panel.value)(p).min(y_top);
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                    px(f64::from(p.subscribers)),
                    py(v)
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round tick step (1, 2 or 5 × 10^k) giving 4–10 ticks up to at least `max`, and the top.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| max / s <= 10.0 && max / s >= 2.0)
        .unwrap_or(mag);
    (step, (max / step).ceil() * step)
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10().floor()) as usize;
        format!("{v:.digits$}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(s: u32, pps: f64, loss: f64, p99: f64) -> Point {
        Point {
            subscribers: s,
            delivered_pps: pps,
            delivered_mbit_s: 0.0,
            loss,
            p50_ms: 0.0,
            p99_ms: p99,
            sfu_busy: 0.0,
            generator_busy: 0.0,
            generator_limited: false,
        }
    }

    #[test]
    fn nice_axes() {
        assert_eq!(nice_axis(1000.0), (100.0, 1000.0));
        assert_eq!(nice_axis(4000.0), (500.0, 4000.0));
        assert_eq!(nice_axis(730.0), (100.0, 800.0));
        let (s, t) = nice_axis(0.5);
        assert!((s - 0.1).abs() < 1e-12 && (t - 0.5).abs() < 1e-9);
        assert_eq!(fmt_tick(0.25, 0.05), "0.25");
    }

    #[test]
    fn renders_both_series_in_every_panel() {
        let a = Series {
            name: "Sluice".into(),
            points: vec![point(100, 20e3, 0.0, 1.0), point(200, 40e3, 0.001, 2.0)],
        };
        let b = Series {
            name: "Janus <1.1>".into(),
            points: vec![point(100, 19e3, 0.01, 60.0)],
        };
        let svg = render("ramp & compare", &[a, b]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains("Janus &lt;1.1&gt;") && svg.contains("ramp &amp; compare"));
        assert!(svg.contains("subscribers"));
    }
}
