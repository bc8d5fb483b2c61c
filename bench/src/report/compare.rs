//! `ringway-bench compare a.json b.json ...`: saved runs side by side, each column after the
//! first with its ratio to the first, and optionally all their percentile curves on one chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::plot::{svg, Series};
use super::Report;
use crate::rt::fmt_us;

/// Loads a report written by `load --json`.
pub fn load(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a ringway-bench JSON report", path.display()))
}

/// The side-by-side table.
pub fn table(runs: &[Report]) -> String {
    type Row<'a> = (&'a str, Box<dyn Fn(&Report) -> (String, Option<f64>)>);
    let rows: Vec<Row> = vec![
        ("mode", Box::new(|r: &Report| (r.mode.clone(), None))),
        (
            "protocol",
            Box::new(|r: &Report| (r.protocol.clone(), None)),
        ),
        (
            "connections",
            Box::new(|r: &Report| (format!("{}x{}", r.connections, r.streams), None)),
        ),
        (
            "requests/s",
            Box::new(|r: &Report| {
                (
                    format!("{:.0}", r.requests_per_sec),
                    Some(r.requests_per_sec),
                )
            }),
        ),
        (
            "requests",
            Box::new(|r: &Report| (r.requests.to_string(), Some(r.requests as f64))),
        ),
        (
            "errors",
            Box::new(|r: &Report| (r.errors.total.to_string(), None)),
        ),
        (
            "p50",
            Box::new(|r: &Report| (fmt_us(r.latency_us.p50), Some(r.latency_us.p50))),
        ),
        (
            "p90",
            Box::new(|r: &Report| (fmt_us(r.latency_us.p90), Some(r.latency_us.p90))),
        ),
        (
            "p99",
            Box::new(|r: &Report| (fmt_us(r.latency_us.p99), Some(r.latency_us.p99))),
        ),
        (
            "p99.9",
            Box::new(|r: &Report| (fmt_us(r.latency_us.p999), Some(r.latency_us.p999))),
        ),
        (
            "p99.99",
            Box::new(|r: &Report| (fmt_us(r.latency_us.p9999), Some(r.latency_us.p9999))),
        ),
        (
            "max",
            Box::new(|r: &Report| (fmt_us(r.latency_us.max), Some(r.latency_us.max))),
        ),
    ];
    let mut cells: Vec<Vec<String>> = Vec::new();
    let mut header = vec![String::new()];
    for (i, r) in runs.iter().enumerate() {
        header.push(if i == 0 {
            r.label.clone()
        } else {
            format!("{} (x first)", r.label)
        });
    }
    cells.push(header);
    for (name, f) in &rows {
        let base = f(&runs[0]).1;
        let mut line = vec![name.to_string()];
        for (i, r) in runs.iter().enumerate() {
            let (text, v) = f(r);
            let cell = match (i, v, base) {
                (0, _, _) | (_, None, _) | (_, _, None) => text,
                (_, Some(v), Some(b)) if b > 0.0 => format!("{text} ({:.2}x)", v / b),
                _ => text,
            };
            line.push(cell);
        }
        cells.push(line);
    }
    let cols = cells[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for row in &cells {
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(o, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(o, "  {cell:>w$}", w = widths[c]);
            }
        }
        o.push('\n');
    }
    o
}

/// Runs `compare`: prints the table and writes the chart if asked.
pub fn run(files: &[PathBuf], plot: Option<&Path>, title: Option<&str>) -> anyhow::Result<()> {
    let runs = files
        .iter()
        .map(|f| load(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if runs.is_empty() {
        anyhow::bail!("compare needs at least one JSON report");
    }
    print!("{}", table(&runs));
    if let Some(p) = plot {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| Series {
                label: &r.label,
                points: &r.distribution,
            })
            .collect();
        let title = title
            .map(str::to_string)
            .unwrap_or_else(|| "Latency by percentile".to_string());
        std::fs::write(p, svg(&title, &series))
            .with_context(|| format!("write {}", p.display()))?;
        println!("plot written to {}", p.display());
    }
    Ok(())
}
