//! A stacked bar chart as inline SVG (no script, no styles: presentation
//! attributes only, so the Content-Security-Policy stays strict).

use std::fmt::Write;

/// One bar: its label and the stacked values (bottom first).
pub(super) struct Bar {
    pub label: String,
    pub values: [i64; 3],
}

/// Colours of the three series: sent, retried, failed.
const COLOURS: [&str; 3] = ["#1f8a4c", "#d69e2e", "#c23b31"];
const SERIES: [&str; 3] = ["sent", "retried", "failed"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart, sized by its viewBox (it scales with the page).
pub(super) fn stacked_bars(bars: &[Bar]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 24.0;
    let max = bars
        .iter()
        .map(|b| b.values.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - 8.0;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="messages per interval">"#
    );
    // Axis labels: 0 and the maximum.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}" stroke="#dde1e8"/><text x="{lx}" y="{y}" font-size="11" text-anchor="end" fill="#5d6678">0</text><text x="{lx}" y="14" font-size="11" text-anchor="end" fill="#5d6678">{max}</text>"##,
        y = H - BOTTOM,
        x2 = W - 8.0,
        lx = LEFT - 6.0
    );
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let mut y = H - BOTTOM;
        for (s, value) in bar.values.iter().enumerate() {
            if *value == 0 {
                continue;
            }
            let h = *value as f64 / max as f64 * plot_h;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{}"><title>{}: {value} {}</title></rect>"#,
                COLOURS[s],
                escape(&bar.label),
                SERIES[s]
            );
        }
    }
    // A few time labels along the bottom.
    let step = (bars.len() / 6).max(1);
    for (i, bar) in bars.iter().enumerate().step_by(step) {
        let x = LEFT + i as f64 * slot + slot / 2.0;
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{}" font-size="11" text-anchor="middle" fill="#5d6678">{}</text>"##,
            H - 6.0,
            escape(&bar.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_tallest_and_labels_are_escaped() {
        let svg = stacked_bars(&[
            Bar {
                label: "10:00".into(),
                values: [10, 0, 0],
            },
            Bar {
                label: "<b>".into(),
                values: [5, 2, 3],
            },
        ]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(">10<"), "the maximum is labelled");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("<rect").count(), 4, "zero values draw nothing");
        assert!(!svg.contains("style="), "no inline styles (CSP)");
    }
}
