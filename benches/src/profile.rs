//! Where a runtime workload's time goes: with `SAYIIR_BENCH_PROFILE=1`, the runtime benches
//! install a `tracing` layer that adds up, per span name (every backend operation runs in a
//! span named after its method), how many spans closed and how long each was open, from
//! creation to close. [`take`] returns the table and starts over.
//!
//! Span time is wall time, waits included (pool checkouts, locks, the server): it answers
//! "which calls does the workload wait on", not "which code burns CPU".

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Closed spans per name: (count, total open time).
type Totals = HashMap<&'static str, (u64, Duration)>;

fn totals() -> &'static Mutex<Totals> {
    static TOTALS: OnceLock<Mutex<Totals>> = OnceLock::new();
    TOTALS.get_or_init(Mutex::default)
}

/// Whether `SAYIIR_BENCH_PROFILE` asks for a profile.
pub fn enabled() -> bool {
    std::env::var("SAYIIR_BENCH_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Installs the span-timing layer as the global subscriber when [`enabled`]. Returns whether
/// it is installed (a benchmark binary has no other subscriber).
pub fn install() -> bool {
    enabled()
        && tracing::subscriber::set_global_default(tracing_subscriber::registry().with(SpanTimes))
            .is_ok()
}

/// The spans closed since the last call, as a markdown table sorted by total time: name,
/// count, total (ms), mean (ms), and `per` (the total divided by `per_unit`, say per task).
pub fn take(per_unit: usize) -> String {
    let taken = std::mem::take(&mut *totals().lock().unwrap_or_else(PoisonError::into_inner));
    let mut rows: Vec<_> = taken.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.1));
    let mut out = String::from(
        "| span | count | total (ms) | mean (ms) | ms per unit |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, (count, total)) in rows {
        let total_ms = total.as_secs_f64() * 1e3;
        let mean = total_ms / count.max(1) as f64;
        let per = total_ms / per_unit.max(1) as f64;
        out.push_str(&format!("| {name} | {count} | {total_ms:.1} | {mean:.3} | {per:.3} |\n"));
    }
    out
}

/// When a span was created, kept in its extensions.
struct Opened(Instant);

/// The layer behind [`install`].
struct SpanTimes;

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(opened) = span.extensions().get::<Opened>().map(|o| o.0) else { return };
        let mut totals = totals().lock().unwrap_or_else(PoisonError::into_inner);
        let entry = totals.entry(span.name()).or_default();
        entry.0 += 1;
        entry.1 += opened.elapsed();
    }
}
