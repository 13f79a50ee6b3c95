//! The shell every backend call runs in, written once for all backends.
//!
//! A backend method hands [`Instrumentation::run`] a [`Call`] (which trait method, with the
//! arguments the shared checks look at) and its storage logic as a future. `run` opens a
//! `tracing` span named after the method, checks the arguments (ids, snapshot fields, signal
//! texts) before the body is polled, so bad input never reaches the database, runs the body
//! inside the span and records a failure on it. The body is only the backend's storage logic.
//!
//! The span is at `DEBUG` level and carries OpenTelemetry's database attributes, so a
//! `tracing-opentelemetry` layer exports it as a client span with no mapping of its own:
//!
//! | field | value |
//! |---|---|
//! | `db.system.name` | `sqlite`, `postgresql`, `redis` or `memory` |
//! | `db.namespace` | what the backend stores into (file path, `database\|schema`, database number) |
//! | `db.operation.name` | the trait method, e.g. `claim_task` |
//! | `sayiir.instance_id` | the workflow instance concerned, empty when there is none |
//! | `otel.kind` | `client` |
//! | `otel.status_code` | `ERROR` when the call failed, unset otherwise |
//! | `error.type` | the failed call's [`BackendError`] variant: `NotFound`, `Backend`, … |
//! | `otel.status_description` | the failed call's error message |
//!
//! This crate never installs a subscriber: the spans go wherever the application's
//! subscriber sends them, and cost one disabled-callsite check when nothing listens.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Either;
use sayiir_core::snapshot::{SignalRequest, WorkflowSnapshot};
use tracing::Instrument;

use crate::BackendError;
use crate::validation::{
    IdKind, validate_cancel_ids, validate_claim_ids, validate_id, validate_ids,
    validate_signal_request, validate_snapshot,
};

/// One call of a storage trait method, with the arguments its checks look at.
///
/// [`Call::Maintenance`] covers a backend's own operations outside the traits (migrations,
/// diagnostics): they get the same span and error recording, and no argument checks.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Call<'a> {
    /// `SnapshotStore::save_snapshot`.
    SaveSnapshot(&'a WorkflowSnapshot),
    /// `SnapshotStore::save_task_result`.
    SaveTaskResult {
        /// The workflow instance.
        instance_id: &'a str,
        /// The completed task.
        task_id: &'a str,
    },
    /// `SnapshotStore::load_snapshot`.
    LoadSnapshot(&'a str),
    /// `SnapshotStore::delete_snapshot`.
    DeleteSnapshot(&'a str),
    /// `SnapshotStore::list_snapshots`.
    ListSnapshots,
    /// `SignalStore::store_signal`.
    StoreSignal {
        /// The workflow instance.
        instance_id: &'a str,
        /// The request, whose texts are checked.
        request: &'a SignalRequest,
    },
    /// `SignalStore::get_signal`.
    GetSignal(&'a str),
    /// `SignalStore::clear_signal`.
    ClearSignal(&'a str),
    /// `SignalStore::send_event`.
    SendEvent {
        /// The workflow instance.
        instance_id: &'a str,
        /// The signal (event) name.
        signal_name: &'a str,
    },
    /// `SignalStore::consume_event`.
    ConsumeEvent {
        /// The workflow instance.
        instance_id: &'a str,
        /// The signal (event) name.
        signal_name: &'a str,
    },
    /// `SignalStore::check_and_cancel`.
    CheckAndCancel {
        /// The workflow instance.
        instance_id: &'a str,
        /// The task the cancel interrupted, if any.
        interrupted_at_task: Option<&'a str>,
    },
    /// `SignalStore::check_and_pause`.
    CheckAndPause(&'a str),
    /// `SignalStore::unpause`.
    Unpause(&'a str),
    /// `TaskClaimStore::claim_task`.
    ClaimTask(ClaimIds<'a>),
    /// `TaskClaimStore::release_task_claim`.
    ReleaseTaskClaim(ClaimIds<'a>),
    /// `TaskClaimStore::extend_task_claim`.
    ExtendTaskClaim(ClaimIds<'a>),
    /// `TaskClaimStore::find_available_tasks`.
    FindAvailableTasks(FindRequest<'a>),
    /// `TaskResultStore::load_task_result`.
    LoadTaskResult {
        /// The workflow instance.
        instance_id: &'a str,
        /// The task whose output is asked for.
        task_id: &'a str,
    },
    /// `RetentionStore::prune_finished_batch`.
    PruneFinished(&'a crate::retention::PruneRequest),
    /// `WorkflowListing::list_workflows`.
    ListWorkflows(&'a crate::listing::ListRequest),
    /// `WorkflowTransfer::export_workflow`.
    ExportWorkflow(&'a str),
    /// `WorkflowTransfer::import_workflow`.
    ImportWorkflow(&'a crate::transfer::WorkflowRecord),
    /// `WorkflowTransfer::list_unstarted_queues`, with its page size.
    ListUnstartedQueues(usize),
    /// `WorkflowTransfer::task_claims`.
    TaskClaims(&'a str),
    /// `StoreStatistics::store_counts`.
    StoreCounts,
    /// A backend operation outside the storage traits; nothing is checked.
    Maintenance {
        /// The operation's name (`db.operation.name`), e.g. `migrate`.
        operation: &'static str,
        /// The instance concerned, empty for none.
        instance_id: &'a str,
    },
}

/// The three ids of a claim operation.
#[derive(Debug, Clone, Copy)]
pub struct ClaimIds<'a> {
    /// The workflow instance.
    pub instance_id: &'a str,
    /// The claimed task.
    pub task_id: &'a str,
    /// The worker that claims, releases or extends.
    pub worker_id: &'a str,
}

/// The arguments of one `find_available_tasks` call, passed on as one value.
#[derive(Debug, Clone, Copy)]
pub struct FindRequest<'a> {
    /// The polling worker.
    pub worker_id: &'a str,
    /// The most tasks to return.
    pub limit: usize,
    /// How long a task waits to gain one priority level (clamped to at least 1 s).
    pub aging_interval: chrono::Duration,
    /// The worker's tags: it takes tasks whose tags are a subset of them.
    pub worker_tags: &'a [String],
}

impl<'a> Call<'a> {
    /// The trait method's name, e.g. `"claim_task"`: the span's name and `db.operation.name`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::SaveSnapshot(_) => "save_snapshot",
            Self::SaveTaskResult { .. } => "save_task_result",
            Self::LoadSnapshot(_) => "load_snapshot",
            Self::DeleteSnapshot(_) => "delete_snapshot",
            Self::ListSnapshots => "list_snapshots",
            Self::StoreSignal { .. } => "store_signal",
            Self::GetSignal(_) => "get_signal",
            Self::ClearSignal(_) => "clear_signal",
            Self::SendEvent { .. } => "send_event",
            Self::ConsumeEvent { .. } => "consume_event",
            Self::CheckAndCancel { .. } => "check_and_cancel",
            Self::CheckAndPause(_) => "check_and_pause",
            Self::Unpause(_) => "unpause",
            Self::ClaimTask(_) => "claim_task",
            Self::ReleaseTaskClaim(_) => "release_task_claim",
            Self::ExtendTaskClaim(_) => "extend_task_claim",
            Self::FindAvailableTasks(_) => "find_available_tasks",
            Self::LoadTaskResult { .. } => "load_task_result",
            Self::PruneFinished(_) => "prune_finished",
            Self::ListWorkflows(_) => "list_workflows",
            Self::ExportWorkflow(_) => "export_workflow",
            Self::ImportWorkflow(_) => "import_workflow",
            Self::ListUnstartedQueues(_) => "list_unstarted_queues",
            Self::TaskClaims(_) => "task_claims",
            Self::StoreCounts => "store_counts",
            Self::Maintenance { operation, .. } => operation,
        }
    }

    /// The workflow instance the call concerns, `""` for calls about no single instance.
    #[must_use]
    pub fn instance_id(&self) -> &'a str {
        match *self {
            Self::SaveSnapshot(snapshot) => &snapshot.instance_id,
            Self::SaveTaskResult { instance_id, .. }
            | Self::LoadSnapshot(instance_id)
            | Self::DeleteSnapshot(instance_id)
            | Self::StoreSignal { instance_id, .. }
            | Self::GetSignal(instance_id)
            | Self::ClearSignal(instance_id)
            | Self::SendEvent { instance_id, .. }
            | Self::ConsumeEvent { instance_id, .. }
            | Self::CheckAndCancel { instance_id, .. }
            | Self::CheckAndPause(instance_id)
            | Self::Unpause(instance_id)
            | Self::LoadTaskResult { instance_id, .. }
            | Self::ExportWorkflow(instance_id)
            | Self::TaskClaims(instance_id)
            | Self::Maintenance { instance_id, .. } => instance_id,
            Self::ImportWorkflow(record) => &record.instance_id,
            Self::ClaimTask(ids) | Self::ReleaseTaskClaim(ids) | Self::ExtendTaskClaim(ids) => {
                ids.instance_id
            }
            Self::ListSnapshots
            | Self::FindAvailableTasks(_)
            | Self::PruneFinished(_)
            | Self::ListWorkflows(_)
            | Self::ListUnstartedQueues(_)
            | Self::StoreCounts => "",
        }
    }

    /// Checks the arguments as every backend must before any I/O (see
    /// [`validation`](crate::validation) for the rules).
    ///
    /// # Errors
    /// `BackendError::Backend` naming the first invalid argument; nothing has been stored.
    pub fn check(&self) -> Result<(), BackendError> {
        match *self {
            Self::SaveSnapshot(snapshot) => validate_snapshot(snapshot),
            Self::SaveTaskResult { instance_id, task_id }
            | Self::LoadTaskResult { instance_id, task_id } => {
                validate_ids(&[(IdKind::Instance, instance_id), (IdKind::Task, task_id)])
            }
            Self::LoadSnapshot(instance_id)
            | Self::DeleteSnapshot(instance_id)
            | Self::GetSignal(instance_id)
            | Self::ClearSignal(instance_id)
            | Self::CheckAndPause(instance_id)
            | Self::Unpause(instance_id)
            | Self::ExportWorkflow(instance_id)
            | Self::TaskClaims(instance_id) => validate_id(IdKind::Instance, instance_id),
            Self::StoreSignal { instance_id, request } => {
                validate_signal_request(instance_id, request)
            }
            Self::SendEvent { instance_id, signal_name }
            | Self::ConsumeEvent { instance_id, signal_name } => {
                validate_ids(&[(IdKind::Instance, instance_id), (IdKind::SignalName, signal_name)])
            }
            Self::CheckAndCancel { instance_id, interrupted_at_task } => {
                validate_cancel_ids(instance_id, interrupted_at_task)
            }
            Self::ClaimTask(ids) | Self::ReleaseTaskClaim(ids) | Self::ExtendTaskClaim(ids) => {
                validate_claim_ids(ids.instance_id, ids.task_id, ids.worker_id)
            }
            Self::FindAvailableTasks(request) => validate_id(IdKind::Worker, request.worker_id),
            Self::PruneFinished(request) => request.check(),
            Self::ListWorkflows(request) => request.check(),
            Self::ImportWorkflow(record) => record.check(),
            Self::ListUnstartedQueues(limit) => crate::transfer::check_queue_limit(limit),
            Self::ListSnapshots | Self::StoreCounts | Self::Maintenance { .. } => Ok(()),
        }
    }
}

/// What a backend's spans say about the database: its system and namespace. Each backend
/// holds one and runs every call through [`Instrumentation::run`].
#[derive(Debug, Clone)]
pub struct Instrumentation {
    system: &'static str,
    namespace: Option<Arc<str>>,
}

impl Instrumentation {
    /// Spans with `db.system.name = system` (OpenTelemetry's well-known value where there is
    /// one: `sqlite`, `postgresql`, `redis`) and no namespace.
    #[must_use]
    pub const fn new(system: &'static str) -> Self {
        Self { system, namespace: None }
    }

    /// Sets `db.namespace`: for SQLite the database file, for PostgreSQL `database|schema`,
    /// for Redis the database number.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<Arc<str>>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The `db.system.name` of the spans.
    #[must_use]
    pub const fn system(&self) -> &'static str {
        self.system
    }

    /// The `db.namespace` of the spans, `""` when unset.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// Runs one call: opens its span, checks its arguments, then polls `body` inside the span
    /// and records a failure on it (`otel.status_code`, `error.type`,
    /// `otel.status_description`). `body` is not polled when the check fails.
    ///
    /// The check runs when `run` is called; the returned future holds `body` once, with no
    /// state machine of its own around it, so wrapping a call costs no stack.
    ///
    /// # Errors
    /// The check's error, or `body`'s.
    pub fn run<T, F>(
        &self,
        call: Call<'_>,
        body: F,
    ) -> impl Future<Output = Result<T, BackendError>> + use<T, F>
    where
        F: Future<Output = Result<T, BackendError>>,
    {
        let span = self.span(&call);
        let body = match span.in_scope(|| call.check()) {
            Ok(()) => Either::Left(body),
            Err(error) => Either::Right(std::future::ready(Err(error))),
        };
        let recorder = span.clone();
        #[cfg(feature = "metrics")]
        let measured =
            (self.system, self.namespace.clone(), call.name(), std::time::Instant::now());
        body.instrument(span).inspect(move |outcome| {
            if let Err(error) = outcome {
                record_error(&recorder, error);
            }
            #[cfg(feature = "metrics")]
            {
                let (system, namespace, operation, started) = &measured;
                crate::metrics::record(
                    system,
                    namespace.as_deref().unwrap_or(""),
                    operation,
                    outcome.as_ref().err(),
                    started.elapsed(),
                );
            }
        })
    }

    /// Sets the gauges of the `metrics` module (`sayiir.workflows`, …) to `counts`, labelled with this
    /// backend's system and namespace (cargo feature `metrics`; without it, nothing).
    /// Backends call it from `StoreStatistics::store_counts`.
    pub fn record_store_counts(&self, counts: &crate::statistics::StoreCounts) {
        #[cfg(feature = "metrics")]
        crate::metrics::record_counts(self.system, self.namespace(), counts);
        #[cfg(not(feature = "metrics"))]
        let _ = counts;
    }

    /// The span of `call`. Span names are static in `tracing`, hence one arm per method.
    fn span(&self, call: &Call<'_>) -> tracing::Span {
        macro_rules! span {
            ($name:literal) => {
                tracing::debug_span!(
                    $name,
                    otel.kind = "client",
                    db.system.name = self.system,
                    db.namespace = self.namespace(),
                    db.operation.name = call.name(),
                    sayiir.instance_id = call.instance_id(),
                    otel.status_code = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                    otel.status_description = tracing::field::Empty,
                )
            };
        }
        match call {
            Call::SaveSnapshot(_) => span!("save_snapshot"),
            Call::SaveTaskResult { .. } => span!("save_task_result"),
            Call::LoadSnapshot(_) => span!("load_snapshot"),
            Call::DeleteSnapshot(_) => span!("delete_snapshot"),
            Call::ListSnapshots => span!("list_snapshots"),
            Call::StoreSignal { .. } => span!("store_signal"),
            Call::GetSignal(_) => span!("get_signal"),
            Call::ClearSignal(_) => span!("clear_signal"),
            Call::SendEvent { .. } => span!("send_event"),
            Call::ConsumeEvent { .. } => span!("consume_event"),
            Call::CheckAndCancel { .. } => span!("check_and_cancel"),
            Call::CheckAndPause(_) => span!("check_and_pause"),
            Call::Unpause(_) => span!("unpause"),
            Call::ClaimTask(_) => span!("claim_task"),
            Call::ReleaseTaskClaim(_) => span!("release_task_claim"),
            Call::ExtendTaskClaim(_) => span!("extend_task_claim"),
            Call::FindAvailableTasks(_) => span!("find_available_tasks"),
            Call::LoadTaskResult { .. } => span!("load_task_result"),
            Call::PruneFinished(_) => span!("prune_finished"),
            Call::ListWorkflows(_) => span!("list_workflows"),
            Call::ExportWorkflow(_) => span!("export_workflow"),
            Call::ImportWorkflow(_) => span!("import_workflow"),
            Call::ListUnstartedQueues(_) => span!("list_unstarted_queues"),
            Call::TaskClaims(_) => span!("task_claims"),
            Call::StoreCounts => span!("store_counts"),
            // A maintenance operation's own name is in `db.operation.name`.
            Call::Maintenance { .. } => span!("sayiir_persistence"),
        }
    }
}

/// OpenTelemetry's error attributes on `span`.
fn record_error(span: &tracing::Span, error: &BackendError) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type(error));
    span.record("otel.status_description", tracing::field::display(error));
}

/// The variant name of `error`: a low-cardinality `error.type`.
pub(crate) fn error_type(error: &BackendError) -> &'static str {
    match error {
        BackendError::NotFound(_) => "NotFound",
        BackendError::Serialization(_) => "Serialization",
        BackendError::Backend(_) => "Backend",
        BackendError::CannotCancel(_) => "CannotCancel",
        BackendError::CannotPause(_) => "CannotPause",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    #[tokio::test]
    async fn a_failed_check_never_polls_the_body() {
        let calls = Instrumentation::new("memory");
        let mut polled = false;
        let outcome: Result<(), _> = calls
            .run(Call::LoadSnapshot(""), async {
                polled = true;
                Ok(())
            })
            .await;
        assert!(matches!(outcome, Err(BackendError::Backend(_))), "{outcome:?}");
        assert!(!polled);
    }

    #[tokio::test]
    async fn the_body_runs_after_a_passing_check_and_its_error_comes_back() {
        let calls = Instrumentation::new("memory").with_namespace("tests");
        assert_eq!(calls.namespace(), "tests");
        let outcome: Result<(), _> = calls
            .run(Call::DeleteSnapshot("order-1"), async {
                Err(BackendError::NotFound("order-1".into()))
            })
            .await;
        assert!(matches!(outcome, Err(BackendError::NotFound(id)) if id == "order-1"));
    }

    /// A span as the subscriber saw it: its name and its fields, as recorded.
    type SeenSpan = (String, Vec<(String, String)>);

    /// What a subscriber sees of the spans.
    #[derive(Default, Clone)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<SeenSpan>>>);

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_string(), format!("{value:?}").trim_matches('"').into()));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push((field.name().to_string(), value.to_string()));
        }
    }

    impl<S> tracing_subscriber::Layer<S> for Captured
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push((attrs.metadata().name().to_string(), fields));
        }

        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut spans = self.0.lock().unwrap();
            if let Some((_, fields)) = spans.last_mut() {
                values.record(&mut Fields(fields));
            }
        }
    }

    /// Spans are named after the method, carry OpenTelemetry's database attributes, and a
    /// failure is recorded on them.
    #[test]
    fn spans_follow_opentelemetry_and_record_failures() {
        use tracing_subscriber::layer::SubscriberExt;

        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        let calls = Instrumentation::new("sqlite").with_namespace("/data/orders.db");
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let missing = calls.run(Call::LoadSnapshot("order-1"), async {
                    Err::<(), _>(BackendError::NotFound("order-1".into()))
                });
                assert!(missing.await.is_err());
                assert!(calls.run(Call::ListSnapshots, async { Ok(()) }).await.is_ok());
            });
        });
        let spans = captured.0.lock().unwrap().clone();
        let field = |span: usize, name: &str| {
            spans[span].1.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].0, "load_snapshot");
        assert_eq!(field(0, "db.system.name").as_deref(), Some("sqlite"));
        assert_eq!(field(0, "db.namespace").as_deref(), Some("/data/orders.db"));
        assert_eq!(field(0, "db.operation.name").as_deref(), Some("load_snapshot"));
        assert_eq!(field(0, "sayiir.instance_id").as_deref(), Some("order-1"));
        assert_eq!(field(0, "otel.kind").as_deref(), Some("client"));
        assert_eq!(field(0, "otel.status_code").as_deref(), Some("ERROR"));
        assert_eq!(field(0, "error.type").as_deref(), Some("NotFound"));
        assert!(field(0, "otel.status_description").is_some_and(|d| d.contains("order-1")));
        assert_eq!(spans[1].0, "list_snapshots");
        assert_eq!(field(1, "otel.status_code"), None, "a success records no error");
    }

    #[test]
    fn names_and_instances() {
        let ids = ClaimIds { instance_id: "i", task_id: "t", worker_id: "w" };
        assert_eq!(Call::ClaimTask(ids).name(), "claim_task");
        assert_eq!(Call::ClaimTask(ids).instance_id(), "i");
        let tags = Vec::new();
        let find = FindRequest {
            worker_id: "w",
            limit: 1,
            aging_interval: chrono::Duration::seconds(1),
            worker_tags: &tags,
        };
        assert_eq!(Call::FindAvailableTasks(find).instance_id(), "");
        let maintenance = Call::Maintenance { operation: "migrate", instance_id: "" };
        assert_eq!(maintenance.name(), "migrate");
        assert!(maintenance.check().is_ok());
    }
}
