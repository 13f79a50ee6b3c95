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

use std::time::Duration;

use crate::BackendError;

/// `db.client.operation.duration`: seconds per call.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `sayiir.db.client.operations`: calls.
pub const OPERATIONS: &str = "sayiir.db.client.operations";
/// `sayiir.db.client.errors`: failed calls.
pub const ERRORS: &str = "sayiir.db.client.errors";

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
