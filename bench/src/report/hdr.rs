//! The HdrHistogram percentile distribution in its standard text form (as Java's
//! `outputPercentileDistribution` writes it, values in milliseconds), which HdrHistogram's
//! plotter and wrk2-style tooling read, and the same points for JSON and SVG.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::Point;
use crate::load::stats::SIGFIG;

/// Percentile ticks per half distance (HdrHistogram's customary 5).
const TICKS: u32 = 5;

/// The percentile curve of a histogram in ns, values in µs.
pub fn points(h: &Histogram<u64>) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut total = 0u64;
    h.iter_quantiles(TICKS)
        .map(|v| {
            total += v.count_since_last_iteration();
            Point {
                percentile: v.quantile_iterated_to(),
                value_us: h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                count: total,
            }
        })
        .collect()
}

/// The standard text distribution (milliseconds) of a histogram in ns.
pub fn distribution_text(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for p in points(h) {
        let ms = p.value_us / 1000.0;
        if p.percentile < 1.0 {
            let _ = writeln!(
                o,
                "{ms:12.3} {:2.12} {:10} {:14.2}",
                p.percentile,
                p.count,
                1.0 / (1.0 - p.percentile)
            );
        } else {
            let _ = writeln!(o, "{ms:12.3} {:2.12} {:10}", p.percentile, p.count);
        }
    }
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(i32::from(SIGFIG))).log2().ceil() as u32);
    let _ = writeln!(
        o,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1e6,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::new_histogram;

    #[test]
    fn text_format() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let t = distribution_text(&h);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        assert_eq!(lines[1], "");
        // First point: the smallest value, percentile 0.
        let f: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(f[0], "0.001");
        assert!(f[1].starts_with("0.000000000000"));
        // The last data line is percentile 1 with no fourth column.
        let last = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        let f: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[1], "1.000000000000");
        assert_eq!(f[2], "1000");
        assert!(t.contains("#[Max     =        1.000, Total count    =         1000]"));
        let ps = points(&h);
        let p50 = ps.iter().find(|p| p.percentile >= 0.5).unwrap();
        assert!((p50.value_us - 500.0).abs() < 1.0, "{}", p50.value_us);
    }
}
