//! PostgreSQL-specific behaviour: TLS, schema isolation, migrations, and the O(limit) plan of
//! `find_available_tasks`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_persistence_postgres::sayiir_core::snapshot::{SignalKind, WorkflowSnapshot};
use sayiir_persistence_postgres::{
    BackendError, ListRequest, PostgresBackend, PostgresOptions, PruneRequest, RetentionStore,
    SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore, WorkflowListing,
    codec::encode_snapshot,
};
use serde_json::Value;

fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_sslmode_require() {
    // The Debian server ships with `ssl = on` and its snakeoil certificate; `require` encrypts
    // without verifying the certificate, as libpq does.
    let plain = common::backend("tls_check").await;
    let ssl: String =
        sqlx::query_scalar("SELECT current_setting('ssl')").fetch_one(plain.pool()).await.unwrap();
    common::drop_backend(&plain).await;
    assert_eq!(
        ssl, "on",
        "the test server has SSL off; enable it (ssl = on with a certificate) to run this test"
    );

    let schema = common::unique_schema("tls");
    let backend = PostgresBackend::connect_with(
        &with_param(&postgres_url(), "sslmode=require"),
        PostgresOptions::default().schema(&schema).max_connections(2),
    )
    .await
    .expect("sslmode=require must connect to a server with SSL on");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(backend.pool())
            .await
            .unwrap();
    assert!(encrypted, "the connection is not encrypted");
    let id = unique_id("tls");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
    assert_eq!(backend.load_snapshot(&id).await.unwrap().instance_id, id);
    common::drop_backend(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_isolated() {
    let a = common::backend("iso_a").await;
    let b = common::backend("iso_b").await;
    let id = unique_id("shared-id");
    a.save_snapshot(&at_task(&id, "t")).await.unwrap();
    a.store_signal(&id, SignalKind::Cancel, sayiir_persistence_conformance::fixtures::request("x"))
        .await
        .unwrap();
    a.send_event(&id, "go", Bytes::from_static(b"e")).await.unwrap();
    assert!(a.claim_task(&id, "t", "w", None).await.unwrap().is_some());

    assert!(b.list_snapshots().await.unwrap().is_empty());
    assert!(matches!(b.load_snapshot(&id).await, Err(BackendError::NotFound(_))));
    assert!(b.get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());
    assert!(b.consume_event(&id, "go").await.unwrap().is_none());
    assert!(b.claim_task(&id, "t", "w", None).await.unwrap().is_some());
    assert!(b.find_available_tasks("w", 10, Duration::seconds(60), &[]).await.unwrap().is_empty());

    // And the other way round: `a` still has everything.
    assert_eq!(a.list_snapshots().await.unwrap(), vec![id.clone()]);
    assert!(a.get_signal(&id, SignalKind::Cancel).await.unwrap().is_some());
    assert_eq!(a.consume_event(&id, "go").await.unwrap(), Some(Bytes::from_static(b"e")));
    common::drop_backend(&a).await;
    common::drop_backend(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_succeed() {
    let schema = common::unique_schema("migrate_race");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move {
                PostgresBackend::connect_with(
                    &postgres_url(),
                    PostgresOptions::default().schema(schema).max_connections(2),
                )
                .await
            })
        })
        .collect();
    let mut backends = Vec::new();
    for task in tasks {
        backends.push(task.await.unwrap().expect("a concurrent migration failed"));
    }
    let sql = format!("SELECT count(*) FROM \"{schema}\"._sayiir_migrations WHERE success");
    let applied: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(backends[0].pool()).await.unwrap();
    let files =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count();
    assert_eq!(applied, i64::try_from(files).unwrap(), "each migration recorded once");
    // A later `migrate()` is a no-op.
    backends[1].migrate().await.unwrap();
    common::drop_backend(&backends[0]).await;
    for backend in &backends[1..] {
        backend.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_migrations_table_untouched() {
    // The application's own `_sqlx_migrations`, in a scratch schema that is first on its
    // search_path, as an application using sqlx migrations would have it.
    let app_schema = common::unique_schema("app");
    let url = with_param(&postgres_url(), &format!("options=-c%20search_path%3D{app_schema}"));
    let app = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await.unwrap();
    for sql in [
        format!("CREATE SCHEMA \"{app_schema}\""),
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL)"
            .to_string(),
        "INSERT INTO _sqlx_migrations VALUES (20240101, 'the application''s own')".to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&app).await.unwrap();
    }
    let public_before = public_sqlx_migrations(&app).await;

    let schema = common::unique_schema("beside_app");
    let backend =
        PostgresBackend::from_pool(app.clone(), PostgresOptions::default().schema(&schema))
            .await
            .unwrap();
    backend.migrate().await.unwrap();

    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&app)
            .await
            .unwrap();
    assert_eq!(rows, vec![(20_240_101, "the application's own".to_string())]);
    assert_eq!(public_sqlx_migrations(&app).await, public_before);
    // The application's search_path is as it was on its pooled connections.
    let path: String =
        sqlx::query_scalar("SELECT current_setting('search_path')").fetch_one(&app).await.unwrap();
    assert_eq!(path, app_schema);
    let ours = format!("SELECT count(*) FROM \"{schema}\"._sayiir_migrations");
    let ours: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(ours)).fetch_one(&app).await.unwrap();
    assert!(ours >= 1);

    for sql in [
        format!("DROP SCHEMA \"{schema}\" CASCADE"),
        format!("DROP SCHEMA \"{app_schema}\" CASCADE"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&app).await.unwrap();
    }
    app.close().await;
}

/// Rows of `public._sqlx_migrations`, or `None` if there is no such table.
async fn public_sqlx_migrations(pool: &sqlx::PgPool) -> Option<i64> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    if !exists {
        return None;
    }
    sqlx::query_scalar("SELECT count(*) FROM public._sqlx_migrations").fetch_one(pool).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schema_names_are_refused() {
    for bad in ["", "a-b", "x\"; DROP TABLE t; --", "1abc", "pg_mine", &"s".repeat(64)] {
        let result =
            PostgresBackend::connect_with(&postgres_url(), PostgresOptions::default().schema(bad))
                .await;
        assert!(matches!(result, Err(BackendError::Backend(_))), "{bad:?} accepted");
    }
}

/// Every plan node in `plan` (a node of an EXPLAIN JSON document) and below it.
fn nodes<'a>(plan: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(plan);
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            nodes(child, out);
        }
    }
}

/// Rows read from `workflows` by the plan, and whether any node scanned it sequentially.
fn workflow_reads(explain_json: &str) -> (f64, bool, String) {
    relation_reads(explain_json, "workflows")
}

/// Rows read from `relation` by the plan, and whether any node scanned it sequentially.
fn relation_reads(explain_json: &str, relation: &str) -> (f64, bool, String) {
    let doc: Value = serde_json::from_str(explain_json).unwrap();
    let root = &doc[0]["Plan"];
    let mut all = Vec::new();
    nodes(root, &mut all);
    let mut rows = 0.0;
    let mut seq = false;
    let mut scans = Vec::new();
    for node in all {
        if node.get("Relation Name").and_then(Value::as_str) != Some(relation) {
            continue;
        }
        let kind = node["Node Type"].as_str().unwrap_or_default();
        seq |= kind == "Seq Scan";
        let actual = node["Actual Rows"].as_f64().unwrap_or_default()
            * node["Actual Loops"].as_f64().unwrap_or(1.0);
        let removed = node.get("Rows Removed by Filter").and_then(Value::as_f64).unwrap_or(0.0)
            * node["Actual Loops"].as_f64().unwrap_or(1.0);
        rows += actual + removed;
        scans.push(format!(
            "{kind} {} rows={actual} removed={removed}",
            node.get("Index Name").and_then(Value::as_str).unwrap_or("-")
        ));
    }
    (rows, seq, scans.join("; "))
}

/// Migration 0004 rewrites `updated_at` written by the previous versions (a plain cast) into
/// the order-keeping encoding: the stamps read back exactly, stamps past 2^63 included, and
/// sort after today's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_4_keeps_updated_at_and_orders_far_stamps_last() {
    common::with_backend("migrate_updated", |backend| async move {
        let schema = backend.schema().to_string();
        let now = at_task(&unique_id("now"), "t");
        let mut far = at_task(&unique_id("far"), "t");
        far.updated_at = u64::MAX;
        for snapshot in [&now, &far] {
            backend.save_snapshot(snapshot).await.unwrap();
        }
        // Back to the encoding of migrations 1 to 3, and forget that 4 ran.
        for sql in [
            format!("UPDATE \"{schema}\".workflows SET updated_at = updated_at # (-9223372036854775807 - 1)"),
            format!("DELETE FROM \"{schema}\"._sayiir_migrations WHERE version = 4"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(backend.pool()).await.unwrap();
        }
        backend.migrate().await.unwrap();
        for snapshot in [&now, &far] {
            let loaded = backend.load_snapshot(&snapshot.instance_id).await.unwrap();
            assert_eq!(loaded.updated_at, snapshot.updated_at, "{}", snapshot.instance_id);
        }
        let first = backend.find_available_tasks("w", 1, Duration::seconds(300), &[]).await.unwrap();
        assert_eq!(first[0].instance_id, now.instance_id, "a stamp in the far future sorts last");
    })
    .await;
}

/// Rows stored before migration 6 (no definition hash beside the blob) get it from their
/// blob when the migrations run; a blob that does not decode gets an empty one. A backfill
/// cut off before migration 7 is finished by the next connect, and processes of the previous
/// version can still save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_6_backfills_definition_hashes() {
    common::with_backend("migrate_definitions", |backend| async move {
        let schema = backend.schema().to_string();
        let (one, two, bad) = (unique_id("def-one"), unique_id("def-two"), unique_id("def-bad"));
        for (id, definition) in [(&one, "orders-v1"), (&two, "orders-v2"), (&bad, "lost")] {
            let mut snapshot = at_task(id, "t");
            snapshot.definition_hash = definition.to_string();
            backend.save_snapshot(&snapshot).await.unwrap();
        }
        // As rows written by versions 1 to 5 look, one of them with a blob that does not decode.
        let forget = format!("UPDATE \"{schema}\".workflows SET definition_hash = NULL");
        let garble =
            format!("UPDATE \"{schema}\".workflows SET blob = '\\xc1ff' WHERE instance_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(forget)).execute(backend.pool()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(garble)).bind(&bad).execute(backend.pool()).await.unwrap();
        backend.migrate().await.unwrap();
        let page = backend.list_workflows(&ListRequest::default()).await.unwrap();
        let mut definitions: Vec<(String, String)> =
            page.workflows.into_iter().map(|w| (w.instance_id, w.definition_hash)).collect();
        definitions.sort();
        let mut expected = vec![
            (one.clone(), "orders-v1".to_string()),
            (two.clone(), "orders-v2".to_string()),
            (bad.clone(), String::new()),
        ];
        expected.sort();
        assert_eq!(definitions, expected);
        let only_v1 = ListRequest::default().definition("orders-v1");
        let listed = backend.list_workflows(&only_v1).await.unwrap().workflows;
        assert_eq!(
            listed.iter().map(|w| w.instance_id.as_str()).collect::<Vec<_>>(),
            [one.as_str()]
        );

        // A process of the previous version saves through the 19-argument function (no
        // definition), and a backfill cut off before migration 7 was recorded: the next
        // connect finishes it.
        let old = unique_id("def-old");
        let mut snapshot = at_task(&old, "t");
        snapshot.definition_hash = "orders-v0".to_string();
        let blob = encode_snapshot(&snapshot).unwrap();
        let old_save = format!(
            "SELECT \"{schema}\".save_snapshot($1, 'InProgress', $2, NULL, 0, NULL, 'AtTask', 't', \
             FALSE, TRUE, 3::smallint, ARRAY[]::text[], NULL, NULL, NULL, NULL, TRUE, \
             ARRAY[]::text[], ARRAY[]::bytea[])"
        );
        sqlx::query(sqlx::AssertSqlSafe(old_save))
            .bind(&old)
            .bind(&blob)
            .execute(backend.pool())
            .await
            .unwrap();
        let cut_off = format!("DELETE FROM \"{schema}\"._sayiir_migrations WHERE version = 7");
        sqlx::query(sqlx::AssertSqlSafe(cut_off)).execute(backend.pool()).await.unwrap();
        let again = common::connect(&schema).await;
        let v0 = ListRequest::default().definition("orders-v0");
        let listed = again.list_workflows(&v0).await.unwrap().workflows;
        assert_eq!(
            listed.iter().map(|w| w.instance_id.as_str()).collect::<Vec<_>>(),
            [old.as_str()]
        );
        again.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_reads_o_limit_rows_among_100k() {
    const ROWS: i64 = 100_000;
    common::with_backend("explain", |backend| async move {
        let schema = backend.schema().to_string();
        // One valid blob for every row: only the columns decide eligibility and order.
        let blob = encode_snapshot(&template()).unwrap();
        // Two thirds ready (priorities 1..5, spread ages), one sixth parked far in the future at a
        // delay, one sixth completed.
        let insert = format!(
            "INSERT INTO \"{schema}\".workflows (instance_id, status, blob, updated_at,
            last_completed_task_id, position_kind, current_task_id, current_done, has_input,
            priority, tags, wake_at)
         SELECT 'wf-' || lpad(i::text, 6, '0'),
            CASE WHEN i % 6 = 5 THEN 'Completed' ELSE 'InProgress' END,
            $1,
            (1700000000 + (i * 7919) % 100000) # (-9223372036854775807 - 1),
            NULL,
            CASE WHEN i % 6 = 4 THEN 'AtDelay' WHEN i % 6 = 5 THEN NULL ELSE 'AtTask' END,
            CASE WHEN i % 6 < 4 THEN 't' END,
            FALSE,
            TRUE,
            1 + i % 5,
            ARRAY[]::text[],
            CASE WHEN i % 6 = 4 THEN 99999999999999 END
         FROM generate_series(1, {ROWS}) AS i"
        );
        sqlx::query(sqlx::AssertSqlSafe(insert)).bind(&blob).execute(backend.pool()).await.unwrap();
        // 2,000 workflows waiting at a signal with nothing queued for them, and 50,000 events
        // that no waiting workflow will ever read: sent to completed and to unknown instances
        // (they never expire).
        let waiting = format!(
            "INSERT INTO \"{schema}\".workflows (instance_id, status, blob, updated_at,
            position_kind, current_done, has_input, priority, tags, signal_name)
         SELECT 'wait-' || lpad(i::text, 6, '0'), 'InProgress', $1,
            (1700000000 + i) # (-9223372036854775807 - 1), 'AtSignal',
            FALSE, FALSE, 3, ARRAY[]::text[], 'go'
         FROM generate_series(1, 2000) AS i"
        );
        sqlx::query(sqlx::AssertSqlSafe(waiting))
            .bind(&blob)
            .execute(backend.pool())
            .await
            .unwrap();
        let events = format!(
            "INSERT INTO \"{schema}\".events (instance_id, signal_name, payload)
         SELECT CASE WHEN i % 2 = 0 THEN 'wf-' || lpad((6 * (i % 16000) + 5)::text, 6, '0')
                     ELSE 'ghost-' || i END,
            'go', '\\x00'::bytea
         FROM generate_series(1, 50000) AS i"
        );
        sqlx::query(sqlx::AssertSqlSafe(events)).execute(backend.pool()).await.unwrap();
        // Five signal waits woken by an event, through the API.
        const WOKEN: usize = 5;
        for i in 0..WOKEN {
            let id = format!("woken-{i}");
            let park = sayiir_persistence_conformance::fixtures::at_signal(
                &id,
                "sig",
                "go",
                None,
                Some("after"),
            );
            backend.save_snapshot(&park).await.unwrap();
            backend.send_event(&id, "go", Bytes::from_static(b"e")).await.unwrap();
        }
        for table in ["workflows", "events"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE \"{schema}\".{table}")))
                .execute(backend.pool())
                .await
                .unwrap();
        }

        for (limit, aging) in
            [(1, Duration::seconds(300)), (10, Duration::seconds(1)), (10, Duration::MAX)]
        {
            let plans = backend.explain_find_available_tasks("w", limit, aging, &[]).await.unwrap();
            for (what, plan) in ["due parks", "pick"].iter().zip(&plans) {
                let (rows, seq, scans) = workflow_reads(plan);
                println!("{what}, limit {limit}: {rows} workflow rows read: {scans}");
                assert!(!seq, "{what} (limit {limit}) scans workflows sequentially: {scans}");
                // Five priority levels, `limit` rows each, plus the level probes.
                let bound = f64::from(u32::try_from(6 * limit + 20).unwrap());
                assert!(
                    rows <= bound,
                    "{what} (limit {limit}) reads {rows} workflow rows (bound {bound}): {scans}"
                );
            }
            // The signal path reads the queue of each woken workflow, and nothing else.
            let (events, seq, scans) = relation_reads(&plans[0], "events");
            println!("due parks, limit {limit}: {events} event rows read: {scans}");
            assert!(!seq, "due parks scan events sequentially: {scans}");
            let bound = f64::from(u32::try_from(WOKEN).unwrap());
            assert!(events <= bound, "due parks read {events} event rows (bound {bound}): {scans}");
        }

        // Listing pages and prune batches read O(limit) rows per status too, deep pages and
        // definition filters included.
        let definitions = format!(
            "UPDATE \"{schema}\".workflows SET definition_hash = 'd' || (right(instance_id, 1)::int % 2)"
        );
        sqlx::query(sqlx::AssertSqlSafe(definitions)).execute(backend.pool()).await.unwrap();
        let deep = backend
            .list_workflows(&ListRequest::default().status("Completed").limit(1000))
            .await
            .unwrap()
            .next
            .expect("more than 1,000 completed workflows");
        let pages = [
            ListRequest::default().limit(10),
            ListRequest::default().status("Completed").limit(10).after(deep.clone()),
            ListRequest::default().definition("d1").limit(10),
            ListRequest::default().definition("d1").status("Completed").limit(10).after(deep),
        ];
        for request in pages {
            let plan = backend.explain_list_workflows(&request).await.unwrap();
            let (rows, seq, scans) = workflow_reads(&plan);
            println!("list {request:?}: {rows} workflow rows read: {scans}");
            assert!(!seq, "list_workflows scans workflows sequentially: {scans}");
            assert!(rows <= 5.0 * 10.0 + 10.0, "list reads {rows} rows for {request:?}: {scans}");
        }
        for request in [
            PruneRequest::finished_before(u64::MAX).batch_size(10),
            PruneRequest::finished_before(u64::MAX).batch_size(10).definition("d1"),
        ] {
            let plan = backend.explain_prune_finished(&request).await.unwrap();
            let (rows, seq, scans) = workflow_reads(&plan);
            println!("prune {request:?}: {rows} workflow rows read: {scans}");
            assert!(!seq, "prune_finished scans workflows sequentially: {scans}");
            assert!(rows <= 3.0 * 10.0 + 20.0, "prune reads {rows} rows for {request:?}: {scans}");
            assert_eq!(backend.prune_finished_batch(&request).await.unwrap(), 10);
        }

        // The answer is the one the rules give: without aging, priority 1, oldest first.
        let found = backend.find_available_tasks("w", 3, Duration::MAX, &[]).await.unwrap();
        assert_eq!(found.len(), 3);
        let check = format!(
            "SELECT instance_id FROM \"{schema}\".workflows
         WHERE status = 'InProgress' AND position_kind = 'AtTask' AND priority = 1
         ORDER BY updated_at, instance_id LIMIT 3"
        );
        let expected: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(check)).fetch_all(backend.pool()).await.unwrap();
        let got: Vec<String> = found.into_iter().map(|t| t.instance_id).collect();
        assert_eq!(got, expected);
    })
    .await;
}

fn template() -> WorkflowSnapshot {
    at_task("template", "t")
}

/// `SELECT <expr>` on the backend's pool, for peeking at stored columns.
async fn scalar<T>(backend: &PostgresBackend, sql: &str, id: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let sql = sql.replace("{schema}", &format!("\"{}\"", backend.schema()));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(backend.pool()).await.unwrap()
}

/// Overwrites the stored blob of `id` with bytes that do not decode.
async fn corrupt_blob(backend: &PostgresBackend, id: &str) {
    let sql =
        format!("UPDATE \"{}\".workflows SET blob = $2 WHERE instance_id = $1", backend.schema());
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&b"\x00 not a snapshot"[..])
        .execute(backend.pool())
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parks_with_pending_signals_do_not_starve_due_delays() {
    use sayiir_persistence_conformance::fixtures::{at_delay, request};
    common::with_backend("starve_parks", |backend| async move {
        // 150 due parks, all older than the healthy one, each with a pending pause: they are
        // never advanced (§ Requests for unclaimed workflows are never applied) and must not fill
        // the batch.
        for i in 0..150 {
            let id = format!("stuck-{i:03}");
            backend
                .save_snapshot(&at_delay(&id, "d", Duration::seconds(-3600), Some("after")))
                .await
                .unwrap();
            backend.store_signal(&id, SignalKind::Pause, request("hold")).await.unwrap();
        }
        // And one undecodable due park, older still.
        backend
            .save_snapshot(&at_delay("broken", "d", Duration::seconds(-7200), Some("after")))
            .await
            .unwrap();
        corrupt_blob(&backend, "broken").await;
        backend
            .save_snapshot(&at_delay("free", "d", Duration::seconds(-1), Some("next")))
            .await
            .unwrap();

        let found =
            backend.find_available_tasks("w", 1, Duration::seconds(300), &[]).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].instance_id.as_str(), found[0].task_id.as_str()), ("free", "next"));
        // The stuck ones stayed parked; the broken one left the parked index.
        let stuck = backend.load_snapshot("stuck-000").await.unwrap();
        assert_eq!(stuck.position_kind(), Some("AtDelay"));
        let wake: Option<i64> = scalar(
            &backend,
            "SELECT wake_at FROM {schema}.workflows WHERE instance_id = $1",
            "broken",
        )
        .await;
        assert_eq!(wake, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_ready_row_does_not_starve_healthy_ones() {
    use sayiir_persistence_conformance::fixtures::at_task_with;
    common::with_backend("starve_ready", |backend| async move {
        // Older, hence better ranked, than the healthy one.
        backend.save_snapshot(&at_task_with("bad", "t", Some(1), 3600)).await.unwrap();
        corrupt_blob(&backend, "bad").await;
        backend.save_snapshot(&at_task_with("good", "t", Some(1), 0)).await.unwrap();
        for round in 0..2 {
            let found =
                backend.find_available_tasks("w", 1, Duration::seconds(300), &[]).await.unwrap();
            let ids: Vec<&str> = found.iter().map(|t| t.instance_id.as_str()).collect();
            assert_eq!(ids, vec!["good"], "round {round}");
        }
        // Saved again with a valid snapshot, it is back.
        backend.save_snapshot(&at_task_with("bad", "t", Some(1), 3600)).await.unwrap();
        let found =
            backend.find_available_tasks("w", 2, Duration::seconds(300), &[]).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|t| t.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["bad", "good"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_find_survive_terminated_connections() {
    let schema = common::unique_schema("reconnect");
    let app = common::unique_schema("sayiir_reconnect");
    let backend = PostgresBackend::connect_with(
        &postgres_url(),
        PostgresOptions::default().schema(&schema).max_connections(4).application_name(&app),
    )
    .await
    .unwrap();
    let id = unique_id("reconnect");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
    // Open every pooled connection, so that all idle ones are dead afterwards.
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| backend.pool().acquire()))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(held);

    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_url())
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(killed.len() >= 4 && killed.iter().all(|k| *k), "{killed:?}");
    // Let the server finish closing them.
    for _ in 0..50 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    assert_eq!(backend.load_snapshot(&id).await.expect("load after restart").instance_id, id);
    let found = backend
        .find_available_tasks("w", 1, Duration::seconds(300), &[])
        .await
        .expect("find after restart");
    assert_eq!(found.len(), 1);
    assert!(backend.get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());

    let drop_schema = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(&admin).await.unwrap();
    backend.close().await;
    admin.close().await;
}

/// A call cut off by `call_timeout` while its statement waits on the server takes the held
/// connection down with it: the calls after it run on a fresh connection and get their own
/// answers, never the cut-off statement's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_mid_statement_leaves_later_calls_correct() {
    let schema = common::unique_schema("held_cut");
    let options = PostgresOptions::default()
        .schema(&schema)
        .call_timeout(std::time::Duration::from_millis(300));
    let backend = PostgresBackend::connect_with(&postgres_url(), options).await.unwrap();
    let (waits, other) = (unique_id("held-wait"), unique_id("held-other"));
    backend.save_snapshot(&at_task(&waits, "t")).await.unwrap();
    backend.save_snapshot(&at_task(&other, "u")).await.unwrap();
    // A lock on the workflow row makes claim_task wait on the server.
    let mut lock = backend.pool().begin().await.unwrap();
    let sql = format!("SELECT 1 FROM \"{schema}\".workflows WHERE instance_id = $1 FOR UPDATE");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&waits).execute(&mut *lock).await.unwrap();
    let cut = backend.claim_task(&waits, "t", "a", None).await;
    let message = format!("{:?}", cut.expect_err("the claim waits past call_timeout"));
    assert!(message.contains("call_timeout"), "{message}");
    lock.rollback().await.unwrap();
    for round in 0..20 {
        let loaded = backend.load_snapshot(&other).await.unwrap();
        assert_eq!(loaded.instance_id, other, "round {round}");
        let claim = backend.claim_task(&other, "u", &format!("w{round}"), None).await.unwrap();
        assert!(claim.is_some(), "round {round}: the claim of a free task");
        backend.release_task_claim(&other, "u", &format!("w{round}")).await.unwrap();
        assert!(backend.get_signal(&other, SignalKind::Cancel).await.unwrap().is_none());
    }
    common::drop_backend(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_refusal_sees_a_result_committed_while_it_waits() {
    common::with_backend("claim_race", |backend| async move {
        let id = unique_id("race");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        assert!(backend.claim_task(&id, "t", "a", None).await.unwrap().is_some());
        // Worker `a` records the result and releases, in one transaction still open while `b`
        // claims (as a save_task_result then release would interleave).
        let schema = backend.schema().to_string();
        let mut tx = backend.pool().begin().await.unwrap();
        for sql in [
            format!(
                "UPDATE \"{schema}\".workflows SET current_done = TRUE, revision = revision + 1 \
                 WHERE instance_id = $1"
            ),
            format!(
                "INSERT INTO \"{schema}\".task_results (instance_id, task_id, output) \
                 VALUES ($1, 't', 'out')"
            ),
            format!("DELETE FROM \"{schema}\".claims WHERE instance_id = $1"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id).execute(&mut *tx).await.unwrap();
        }
        let claimer = {
            let backend = backend.clone();
            let id = id.clone();
            tokio::spawn(async move { backend.claim_task(&id, "t", "b", None).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!claimer.is_finished(), "the claim must wait for the workflow row");
        tx.commit().await.unwrap();
        let claim = claimer.await.unwrap().unwrap();
        assert!(claim.is_none(), "claimed a task whose result was committed: {claim:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_cancel_validates_the_interrupted_task() {
    common::with_backend("cancel_ids", |backend| async move {
        let id = unique_id("cancel");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        for bad in [String::new(), "a\0b".to_string(), "x".repeat(1025)] {
            match backend.check_and_cancel(&id, Some(&bad)).await {
                Err(BackendError::Backend(message)) => {
                    assert!(message.contains("task_id"), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(!backend.check_and_cancel(&id, Some("t")).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woken_mark_follows_the_event_queue() {
    use sayiir_persistence_conformance::fixtures::at_signal;
    common::with_backend("woken", |backend| async move {
        let woken = |id: &'static str| {
            let backend = backend.clone();
            async move {
                scalar::<bool>(
                    &backend,
                    "SELECT woken FROM {schema}.workflows WHERE instance_id = $1",
                    id,
                )
                .await
            }
        };
        // Sent before the park: the save sees it.
        backend.send_event("early", "go", Bytes::from_static(b"1")).await.unwrap();
        backend.save_snapshot(&at_signal("early", "sig", "go", None, Some("next"))).await.unwrap();
        assert!(woken("early").await);
        // Sent after the park, for another name, then for the awaited one.
        backend.save_snapshot(&at_signal("late", "sig", "go", None, Some("next"))).await.unwrap();
        assert!(!woken("late").await);
        backend.send_event("late", "other", Bytes::from_static(b"x")).await.unwrap();
        assert!(!woken("late").await);
        backend.send_event("late", "go", Bytes::from_static(b"2")).await.unwrap();
        assert!(woken("late").await);
        // Consumed by someone else: the mark goes.
        assert_eq!(
            backend.consume_event("late", "go").await.unwrap(),
            Some(Bytes::from_static(b"2"))
        );
        assert!(!woken("late").await);
        // A stale mark (set behind the backend's back) is cleared by find.
        let sql = format!(
            "UPDATE \"{}\".workflows SET woken = TRUE WHERE instance_id = 'late'",
            backend.schema()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(backend.pool()).await.unwrap();
        let found =
            backend.find_available_tasks("w", 10, Duration::seconds(300), &[]).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|t| t.instance_id.as_str()).collect();
        assert_eq!(ids, vec!["early"]);
        assert!(!woken("late").await);
        assert!(!woken("early").await);
        assert_eq!(
            backend.load_task_result("early", "sig").await.unwrap(),
            Some(Bytes::from_static(b"1"))
        );
    })
    .await;
}

/// `signal_pending` (migration 0003) follows the signals table through every writer, so a
/// workflow with a pending request is in no scheduling index and comes back when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_pending_follows_every_signal_writer() {
    use sayiir_persistence_conformance::fixtures::{in_progress, request};
    common::with_backend("signal_pending", |backend| async move {
        let flag = |id: &'static str| {
            let backend = backend.clone();
            async move {
                scalar::<bool>(
                    &backend,
                    "SELECT signal_pending FROM {schema}.workflows WHERE instance_id = $1",
                    id,
                )
                .await
            }
        };
        backend.save_snapshot(&in_progress("w1")).await.unwrap();
        assert!(!flag("w1").await);
        backend.store_signal("w1", SignalKind::Pause, request("p")).await.unwrap();
        backend.store_signal("w1", SignalKind::Cancel, request("c")).await.unwrap();
        assert!(flag("w1").await);
        let found = backend.find_available_tasks("w", 10, Duration::seconds(60), &[]).await;
        assert!(found.unwrap().is_empty());
        // A whole save keeps the flag; the pause guard consumes one request, not both.
        backend.save_snapshot(&in_progress("w1")).await.unwrap();
        assert!(flag("w1").await);
        assert!(backend.check_and_pause("w1").await.unwrap());
        assert!(flag("w1").await, "the cancel is still pending");
        backend.clear_signal("w1", SignalKind::Cancel).await.unwrap();
        assert!(!flag("w1").await);
        // unpause drops a pending pause (§ Unpause drops a pending pause) and clears the flag with
        // it.
        backend.store_signal("w1", SignalKind::Cancel, request("c")).await.unwrap();
        backend.clear_signal("w1", SignalKind::Cancel).await.unwrap();
        backend.unpause("w1").await.unwrap();
        assert!(!flag("w1").await);
        let found = backend.find_available_tasks("w", 10, Duration::seconds(60), &[]).await;
        assert_eq!(found.unwrap().len(), 1);
    })
    .await;
}

/// Every signal writer locks the workflow row before the signals rows: storing, clearing
/// and applying requests on one instance from many tasks at once never deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signal_writers_do_not_deadlock() {
    use sayiir_persistence_conformance::fixtures::{in_progress, request};
    common::with_backend("signal_locks", |backend| async move {
        backend.save_snapshot(&in_progress("hot")).await.unwrap();
        let tasks = (0..8).map(|n| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for round in 0..40 {
                    let result = match (n + round) % 4 {
                        0 => backend.store_signal("hot", SignalKind::Pause, request("p")).await,
                        1 => backend.clear_signal("hot", SignalKind::Pause).await,
                        2 => backend.check_and_pause("hot").await.map(drop),
                        _ => match backend.unpause("hot").await {
                            Err(BackendError::CannotPause(_)) => Ok(()),
                            other => other.map(drop),
                        },
                    };
                    // Storing a pause on a paused workflow is idempotent; nothing else may fail.
                    result.unwrap_or_else(|e| panic!("task {n}, round {round}: {e}"));
                }
            })
        });
        for task in futures::future::join_all(tasks).await {
            task.unwrap();
        }
        let consistent: bool = scalar(
            &backend,
            "SELECT signal_pending = EXISTS (SELECT 1 FROM {schema}.signals WHERE instance_id = $1)
             FROM {schema}.workflows WHERE instance_id = $1",
            "hot",
        )
        .await;
        assert!(consistent, "signal_pending disagrees with the signals table");
    })
    .await;
}
