//! Per-call latencies and throughput of every measured operation, and the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latencies kept per operation; enough for a stable p99.
const KEPT: usize = 200_000;

#[derive(Debug, Default)]
struct Sample {
    ops: u64,
    wall: Duration,
    latencies: Vec<Duration>,
}

static RECORDS: Mutex<BTreeMap<(String, usize), Sample>> = Mutex::new(BTreeMap::new());

/// Adds one measured batch: `latencies.len()` calls of `op` at `concurrency`, taking `wall`.
pub(crate) fn record(op: &str, concurrency: usize, wall: Duration, latencies: Vec<Duration>) {
    let mut records = RECORDS.lock().unwrap();
    let sample = records.entry((op.to_string(), concurrency)).or_default();
    sample.ops += latencies.len() as u64;
    sample.wall += wall;
    let room = KEPT.saturating_sub(sample.latencies.len());
    sample.latencies.extend(latencies.into_iter().take(room));
}

/// Forgets everything recorded (between bench targets run in one process).
pub(crate) fn reset() {
    RECORDS.lock().unwrap().clear();
}

/// Throughput and latency percentiles of one operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) ops_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

pub(crate) fn stats(op: &str, concurrency: usize) -> Option<Stats> {
    let mut records = RECORDS.lock().unwrap();
    let sample = records.get_mut(&(op.to_string(), concurrency))?;
    if sample.ops == 0 || sample.wall.is_zero() {
        return None;
    }
    sample.latencies.sort_unstable();
    let at = |q: f64| {
        let last = sample.latencies.len().saturating_sub(1);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((last as f64) * q).round() as usize;
        sample.latencies.get(i).copied().unwrap_or_default()
    };
    #[allow(clippy::cast_precision_loss)]
    let ops_per_sec = sample.ops as f64 / sample.wall.as_secs_f64();
    Some(Stats { ops_per_sec, p50: at(0.50), p99: at(0.99) })
}

/// One line of the report: an operation, and the raw operation it is compared with.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) op: String,
    pub(crate) concurrency: usize,
    /// The raw operation and how many of it one call is worth (2 for a pair of reads).
    pub(crate) raw: Option<(String, f64)>,
    /// The ratio a target requires, if any.
    pub(crate) target: Option<f64>,
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 { format!("{us:.0} µs") } else { format!("{us:.1} µs") }
}

/// The markdown report of one backend.
pub(crate) fn report(backend: &str, about: &str, lines: &[Line], notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {backend}\n\n{about}\n");
    let _ = writeln!(out, "| operation | conc | ops/s | p50 | p99 | raw ops/s | ratio | target |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for line in lines {
        let Some(s) = stats(&line.op, line.concurrency) else { continue };
        let raw = line.raw.as_ref().and_then(|(raw, times)| {
            stats(raw, line.concurrency).map(|r| (r.ops_per_sec / times, raw))
        });
        let (raw_text, ratio_text, verdict) = match (raw, line.target) {
            (Some((raw_ops, _)), target) => {
                let ratio = s.ops_per_sec / raw_ops;
                let verdict = match target {
                    Some(t) if ratio >= t => format!("≥ {t}: met"),
                    Some(t) => format!("≥ {t}: **missed**"),
                    None => String::new(),
                };
                (format!("{raw_ops:.0}"), format!("{ratio:.2}"), verdict)
            }
            (None, _) => (String::new(), String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {raw_text} | {ratio_text} | {verdict} |",
            line.op,
            line.concurrency,
            s.ops_per_sec,
            micros(s.p50),
            micros(s.p99)
        );
    }
    for note in notes {
        let _ = writeln!(out, "\n{note}");
    }
    out
}
