//! SVG percentile charts in the style of HdrHistogram's plotter: latency (linear) against the
//! percentile on a log-scaled "1 in N" axis (0%, 90%, 99%, 99.9%, ... evenly spaced), one line
//! per run. Plain SVG text, no dependencies; any browser or `convert` renders it.

use std::fmt::Write as _;

use super::Point;

/// One line on the chart.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The percentile curve.
    pub points: &'a [Point],
}

const W: f64 = 960.0;
const H: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 72.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// x position ("nines") of a point: log10(1 / (1 - p)); the 100% point sits at 1 in N.
fn nines(p: &Point) -> f64 {
    if p.percentile < 1.0 {
        (1.0 / (1.0 - p.percentile)).log10()
    } else {
        (p.count.max(1) as f64).log10()
    }
}

fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let f = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct_label(n: u32) -> String {
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// Draws the series; `title` goes on top.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(nines))
        .fold(2.0f64, f64::max)
        .ceil();
    let max_us = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value_us))
        .fold(0.0f64, f64::max);
    let (unit, div) = if max_us >= 1000.0 {
        ("ms", 1000.0)
    } else {
        ("µs", 1.0)
    };
    let step = nice_step(max_us / div * 1.05, 6.0);
    let max_y = ((max_us / div * 1.05) / step).ceil().max(1.0) * step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / max_x * pw;
    let y = |v: f64| TOP + ph - v / max_y * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="30" text-anchor="middle" font-size="17" font-weight="bold">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid and axes.
    for i in 0..=(max_x as u32) {
        let px = x(f64::from(i));
        let _ = writeln!(
            o,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            o,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 20.0,
            pct_label(i)
        );
    }
    let mut v = 0.0;
    while v <= max_y + step / 2.0 {
        let py = y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#dddddd"/>"##,
            LEFT + pw
        );
        let label = if step < 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        };
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            LEFT - 8.0,
            py + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale: 1 in N requests)</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    // The unit sits above the y axis (rotated text renders unevenly across SVG viewers).
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="start">latency ({unit})</text>"#,
        12.0,
        TOP - 12.0
    );
    // Lines and legend.
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for p in s.points {
            let _ = write!(pts, "{:.1},{:.1} ", x(nines(p)), y(p.value_us / div));
        }
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.trim_end()
        );
        let ly = TOP + 18.0 + 20.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
            LEFT + 14.0,
            LEFT + 40.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 48.0,
            ly + 4.5,
            esc(s.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series() {
        let a = [
            Point {
                percentile: 0.0,
                value_us: 10.0,
                count: 1,
            },
            Point {
                percentile: 0.99,
                value_us: 900.0,
                count: 99,
            },
            Point {
                percentile: 1.0,
                value_us: 2500.0,
                count: 100,
            },
        ];
        let s = svg(
            "t <1>",
            &[
                Series {
                    label: "a&b",
                    points: &a,
                },
                Series {
                    label: "c",
                    points: &a,
                },
            ],
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a&amp;b") && s.contains("t &lt;1&gt;"));
        assert!(s.contains("99%") && s.contains("latency (ms)"));
        assert!(s.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn labels() {
        assert_eq!(pct_label(3), "99.9%");
        assert_eq!(pct_label(5), "99.999%");
        assert_eq!(nice_step(10.0, 5.0), 2.0);
    }
}
