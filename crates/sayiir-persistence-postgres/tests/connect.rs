//! What connecting costs, counted from the statements sqlx sends. A test binary of its own:
//! it installs a global `tracing` subscriber, which must see every statement of the process
//! (also those run by tasks the pool spawns) and no other test's.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use sayiir_persistence_conformance::fixtures::{at_delay, at_task};
use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_persistence_postgres::{
    PostgresBackend, PostgresOptions, SnapshotStore, TaskClaimStore,
};
use tracing_subscriber::layer::SubscriberExt;

/// The statements sqlx sends (its `sqlx::query` events), as a subscriber sees them.
#[derive(Default, Clone)]
struct SentStatements(Arc<Mutex<Vec<String>>>);

impl SentStatements {
    /// Takes what was sent so far.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// sqlx logs a short statement whole in `summary`, a long one abridged there and whole in
/// `db.statement`: both are kept.
struct StatementText<'a>(&'a mut String);

impl tracing::field::Visit for StatementText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "db.statement" || field.name() == "summary" {
            self.0.push_str(&format!("{value:?} "));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SentStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            let mut text = String::new();
            event.record(&mut StatementText(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
}

/// Whether `statement` is one of those a new connection runs once to have them planned (the
/// due-park search and the pick of `find_available_tasks`).
fn is_warm_up(statement: &str) -> bool {
    statement.contains("WITH RECURSIVE clock") || statement.contains("WITH due AS")
}

/// Connecting to a schema that is already up to date sends two plain queries beyond opening
/// the connections (no lock, no DDL, no migration bookkeeping); each of the `min_connections`
/// connections opened, and the held one, runs the two find statements once; and the first call uses one of
/// those connections instead of opening another. A schema that is not up to date still
/// takes the locked migration path. `find_available_tasks` with no due park is one statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_to_an_up_to_date_schema_costs_two_queries() {
    let sent = SentStatements::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(sent.clone()))
        .unwrap();

    let first = common::backend("reconnect").await;
    sent.take();
    let options = PostgresOptions::default().schema(first.schema()).min_connections(2);
    let second = PostgresBackend::connect_with(&postgres_url(), options).await.unwrap();
    let statements = sent.take();
    let (warm_up, schema): (Vec<_>, Vec<_>) = statements.iter().partition(|s| is_warm_up(s));
    assert_eq!(schema.len(), 2, "statements beyond the connections' warm-up: {schema:#?}");
    assert!(
        schema.iter().all(|s| !s.contains("advisory") && !s.contains("CREATE")),
        "no lock and no DDL on an up-to-date schema: {schema:#?}"
    );
    assert_eq!(
        warm_up.len(),
        6,
        "each of the 2 pooled connections and the held one plans the 2 find statements once"
    );
    assert_eq!(
        (second.pool().size(), second.pool().num_idle()),
        (2, 2),
        "min_connections connections, open and idle, when connect_with returns"
    );
    second.save_snapshot(&at_task("reconnect-1", "t1")).await.unwrap();
    assert_eq!(second.pool().size(), 2, "the first call used a connection opened at connect");

    // find_available_tasks with nothing parked: one statement, which also says no park is due.
    let aging = chrono::Duration::seconds(60);
    sent.take();
    let found = second.find_available_tasks("w1", 2, aging, &[]).await.unwrap();
    let statements = sent.take();
    assert_eq!(found.len(), 1, "the ready task is found");
    assert_eq!(statements.len(), 1, "one statement when nothing is parked: {statements:#?}");
    // A park not yet due changes nothing; a due one is advanced and found by the same call.
    let later = at_delay("reconnect-2", "wait", chrono::Duration::hours(1), Some("t2"));
    second.save_snapshot(&later).await.unwrap();
    sent.take();
    second.find_available_tasks("w1", 2, aging, &[]).await.unwrap();
    assert_eq!(sent.take().len(), 1, "a park that is not due costs nothing more");
    let due = at_delay("reconnect-3", "wait", chrono::Duration::seconds(-1), Some("t3"));
    second.save_snapshot(&due).await.unwrap();
    sent.take();
    let found = second.find_available_tasks("w1", 3, aging, &[]).await.unwrap();
    let statements = sent.take();
    assert!(
        found.iter().any(|task| task.instance_id == "reconnect-3" && task.task_id == "t3"),
        "the due park is advanced and its task returned by the same call: {found:?}"
    );
    assert!(
        statements.iter().any(|s| s.contains("WITH due AS")),
        "a due park is read by the due-park search: {statements:#?}"
    );

    let fresh = common::unique_schema("reconnect_fresh");
    sent.take();
    let migrated =
        PostgresBackend::connect_with(&postgres_url(), PostgresOptions::default().schema(&fresh))
            .await
            .unwrap();
    let statements = sent.take();
    assert!(
        statements.iter().any(|s| s.contains("pg_advisory_lock")),
        "a missing schema is created under the migration lock: {statements:#?}"
    );
    assert_eq!(migrated.list_snapshots().await.unwrap(), Vec::<String>::new());
    common::drop_backend(&migrated).await;
    second.close().await;
    common::drop_backend(&first).await;
}
