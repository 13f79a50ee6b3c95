//! Metrics of every backend call, through the [`metrics`](https://docs.rs/metrics) facade
//! (cargo feature `metrics`, off by default). Recorded by [`Instrumentation::run`](crate::operation::Instrumentation::run), so
//! every backend reports the same metrics with the same labels; the application installs the
//! recorder (a Prometheus or OpenTelemetry exporter), never this crate.
//!
//! | metric | kind | unit | labels |
//! |---|---|---|---|
//! | `db.client.operation.duration` | histogram | s | `db.system.name`, `db.operation.name`, `db.namespace`, and `error.type` on failure |
//! | `sayiir.db.client.operations` | counter | calls | `db.system.name`, `db.operation.name`, `db.namespace` |
//! | `sayiir.db.client.errors` | counter | calls | the same, and `error.type` (`NotFound`, `Backend`, …) |
//!
//! The histogram is OpenTelemetry's database client metric, with its attribute names; the two
//! counters, under this project's namespace, count calls and failed calls per operation.
//!
//! Gauges, set by each `StoreStatistics::store_counts` call (see
//! [`statistics`](crate::statistics); call it on a timer):
//!
//! | metric | kind | unit | labels |
//! |---|---|---|---|
//! | `sayiir.workflows` | gauge | workflows | `db.system.name`, `db.namespace`, `sayiir.workflow.status` |
//! | `sayiir.tasks.ready` | gauge | tasks | `db.system.name`, `db.namespace` |
//! | `sayiir.claims.live` | gauge | claims | `db.system.name`, `db.namespace` |

use std::time::Duration;

use crate::BackendError;

/// `db.client.operation.duration`: seconds per call.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `sayiir.db.client.operations`: calls.
pub const OPERATIONS: &str = "sayiir.db.client.operations";
/// `sayiir.db.client.errors`: failed calls.
pub const ERRORS: &str = "sayiir.db.client.errors";

/// `sayiir.workflows`: stored workflows, per `sayiir.workflow.status`.
pub const WORKFLOWS: &str = "sayiir.workflows";
/// `sayiir.tasks.ready`: tasks a worker could take now.
pub const READY_TASKS: &str = "sayiir.tasks.ready";
/// `sayiir.claims.live`: claims that have not expired.
pub const LIVE_CLAIMS: &str = "sayiir.claims.live";

/// Sets the store gauges.
#[allow(clippy::cast_precision_loss)] // gauges are f64; counts past 2^53 are not a concern
pub(crate) fn record_counts(
    system: &'static str,
    namespace: &str,
    counts: &crate::statistics::StoreCounts,
) {
    let labels = [("db.system.name", system.to_string()), ("db.namespace", namespace.to_string())];
    for (status, count) in &counts.workflows {
        let [a, b] = labels.clone();
        let labels = [a, b, ("sayiir.workflow.status", status.clone())];
        metrics::gauge!(WORKFLOWS, &labels).set(*count as f64);
    }
    metrics::gauge!(READY_TASKS, &labels).set(counts.ready_tasks as f64);
    metrics::gauge!(LIVE_CLAIMS, &labels).set(counts.live_claims as f64);
}

/// Records one finished call.
pub(crate) fn record(
    system: &'static str,
    namespace: &str,
    operation: &'static str,
    error: Option<&BackendError>,
    elapsed: Duration,
) {
    let labels = [
        ("db.system.name", system.to_string()),
        ("db.operation.name", operation.to_string()),
        ("db.namespace", namespace.to_string()),
    ];
    metrics::counter!(OPERATIONS, &labels).increment(1);
    match error {
        None => metrics::histogram!(OPERATION_DURATION, &labels).record(elapsed.as_secs_f64()),
        Some(error) => {
            let kind = crate::operation::error_type(error);
            let [a, b, c] = labels;
            let labels = [a, b, c, ("error.type", kind.to_string())];
            metrics::histogram!(OPERATION_DURATION, &labels).record(elapsed.as_secs_f64());
            metrics::counter!(ERRORS, &labels).increment(1);
        }
    }
}
