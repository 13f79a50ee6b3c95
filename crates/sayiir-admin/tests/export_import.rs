//! `export` and `import` end to end: a store with workflows in every state goes SQLite →
//! PostgreSQL → Redis → SQLite through the binary, on real servers, and comes back the same,
//! field by field; interrupted and damaged files are refused without losing anything.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use common::{admin, ok, stderr};
use sayiir_persistence::export_file::{Line, decode_line};
use sayiir_persistence::{
    SignalStore, SnapshotStore, TaskClaimStore, WorkflowRecord, WorkflowTransfer,
};
use sayiir_persistence_conformance::fixtures::{assert_same_record, seed_every_state, unique_id};
use sayiir_persistence_conformance::servers::{postgres_url, redis_url};
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};
use sayiir_persistence_redis::{RedisBackend, RedisOptions, redis};
use sayiir_persistence_sqlite::SqliteBackend;

/// The header's source and the records of an export file, by instance id.
fn read_export(path: &Path) -> (String, BTreeMap<String, WorkflowRecord>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut source = String::new();
    let mut records = BTreeMap::new();
    let mut ended = false;
    for (number, line) in text.lines().enumerate() {
        match decode_line(number as u64 + 1, line).unwrap() {
            Line::Header(header) => source = header.source,
            Line::Workflow(record) => {
                records.insert(record.instance_id.clone(), *record);
            }
            Line::End(_) => ended = true,
            _ => panic!("unknown line"),
        }
    }
    assert!(ended, "{} has its end line", path.display());
    (source, records)
}

/// The same records, field by field.
fn assert_same_store(
    actual: &BTreeMap<String, WorkflowRecord>,
    expected: &BTreeMap<String, WorkflowRecord>,
) {
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (id, record) in expected {
        assert_same_record(&actual[id], record);
    }
}

fn sqlite_store(path: &Path) -> Vec<String> {
    vec!["--url".to_string(), format!("sqlite:{}", path.display())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_to_redis_to_sqlite_gives_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let arg = |path: &Path| path.display().to_string();

    // A source store with a workflow in every state, an unstarted event queue and a claim.
    let source = SqliteBackend::open(file("source.db")).await.unwrap();
    let ids = seed_every_state(&source).await;
    let early = unique_id("early");
    source.send_event(&early, "go", Bytes::from_static(b"sent before the start")).await.unwrap();
    let running = ids.iter().find(|id| id.starts_with("running")).unwrap().clone();
    source.claim_task(&running, "c", "worker-1", None).await.unwrap().unwrap();
    let source_store = sqlite_store(&file("source.db"));
    let exported = ok(&source_store, &["export", &arg(&file("a.jsonl"))]);
    assert!(
        exported.contains("exported 7 workflow(s) and 1 unstarted event queue(s)"),
        "{exported}"
    );

    // Into PostgreSQL (schema created by `migrate`), and out again.
    let schema = unique_id("admin_export").replace('-', "_");
    let pg = vec!["--url".to_string(), postgres_url(), "--schema".to_string(), schema.clone()];
    ok(&pg, &["migrate"]);
    let imported = ok(&pg, &["import", &arg(&file("a.jsonl"))]);
    assert!(imported.contains("imported 8 record(s) into the PostgreSQL store"), "{imported}");
    ok(&pg, &["export", &arg(&file("b.jsonl"))]);

    // Into Redis, and out again.
    let prefix = unique_id("admin-export");
    let rd = vec!["--url".to_string(), redis_url(), "--key-prefix".to_string(), prefix.clone()];
    ok(&rd, &["import", &arg(&file("b.jsonl"))]);
    ok(&rd, &["export", &arg(&file("c.jsonl"))]);

    // Into a new SQLite file, and out again.
    let target = sqlite_store(&file("target.db"));
    ok(&target, &["migrate"]);
    ok(&target, &["import", &arg(&file("c.jsonl"))]);
    ok(&target, &["export", &arg(&file("d.jsonl"))]);

    let (a_source, a) = read_export(&file("a.jsonl"));
    assert_eq!(a.len(), 8);
    assert!(a[&early].snapshot.is_none() && a[&early].events["go"].len() == 1);
    for (name, expected_source) in
        [("b.jsonl", "postgresql"), ("c.jsonl", "redis"), ("d.jsonl", "sqlite")]
    {
        let (source_name, records) = read_export(&file(name));
        assert_eq!(source_name, expected_source);
        assert_same_store(&records, &a);
    }
    assert_eq!(a_source, "sqlite");

    // The final store serves what the first held, through the library; claims stay behind.
    let back = SqliteBackend::open(file("target.db")).await.unwrap();
    for id in &ids {
        let record = back.export_workflow(id).await.unwrap().unwrap();
        assert_same_record(&record, &source.export_workflow(id).await.unwrap().unwrap());
    }
    assert!(back.task_claims(&running).await.unwrap().is_empty(), "claims are not carried");

    // The same import again stores nothing and says so.
    let again = ok(&target, &["import", &arg(&file("d.jsonl"))]);
    assert!(
        again.contains("imported 0 record(s)") && again.contains("8 already stored"),
        "{again}"
    );
    // Consumed only now: a drained queue is nothing stored, and would be imported again.
    assert_eq!(
        back.consume_event(&early, "go").await.unwrap().as_deref(),
        Some(&b"sent before the start"[..])
    );

    // Clean up the shared servers.
    let pool = PostgresBackend::connect_with(
        &postgres_url(),
        PostgresOptions::default().schema(&schema).auto_migrate(false),
    )
    .await
    .unwrap();
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sayiir_persistence_postgres::sqlx::query(sayiir_persistence_postgres::sqlx::AssertSqlSafe(
        drop,
    ))
    .execute(pool.pool())
    .await
    .unwrap();
    pool.close().await;
    let redis_backend =
        RedisBackend::connect_with(&redis_url(), RedisOptions::default().key_prefix(&prefix))
            .await
            .unwrap();
    common::unlink_redis_keys(&redis_url(), &redis_backend.key_pattern()).await;
}

/// A file cut short is refused after importing what it holds, and the full file run again
/// imports the rest; a damaged line names its number; an export never replaces a file
/// unasked and leaves no file behind when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_refused_and_interrupted_imports_resume() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let arg = |path: &Path| path.display().to_string();
    let source = SqliteBackend::open(file("source.db")).await.unwrap();
    seed_every_state(&source).await;
    let store = sqlite_store(&file("source.db"));
    ok(&store, &["export", &arg(&file("full.jsonl"))]);
    let text = std::fs::read_to_string(file("full.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "header, 7 workflows, end");

    let target = sqlite_store(&file("target.db"));
    ok(&target, &["migrate"]);
    std::fs::write(file("cut.jsonl"), lines[..4].join("\n")).unwrap();
    let cut = admin(&target, &["import", &arg(&file("cut.jsonl"))]);
    assert_eq!(cut.status.code(), Some(1), "{}", stderr(&cut));
    assert!(stderr(&cut).contains("cut short"), "{}", stderr(&cut));
    assert!(stderr(&cut).contains("3 record(s) were imported before the failure"));
    let rest = ok(&target, &["import", &arg(&file("full.jsonl"))]);
    assert!(rest.contains("imported 4 record(s)") && rest.contains("3 already stored"), "{rest}");

    std::fs::write(file("torn.jsonl"), format!("{}\n{}", lines[..3].join("\n"), &lines[3][..40]))
        .unwrap();
    let torn = admin(&target, &["import", &arg(&file("torn.jsonl"))]);
    assert_eq!(torn.status.code(), Some(1));
    assert!(stderr(&torn).contains("line 4 ends the file in the middle"), "{}", stderr(&torn));
    assert!(stderr(&torn).contains("import a complete export"), "{}", stderr(&torn));

    let mut damaged = lines.clone();
    damaged[2] = "{\"workflow\": not json";
    std::fs::write(file("damaged.jsonl"), damaged.join("\n")).unwrap();
    let refused = admin(&target, &["import", &arg(&file("damaged.jsonl"))]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("line 3"), "{}", stderr(&refused));
    std::fs::write(file("other.txt"), "hello\n").unwrap();
    let other = admin(&target, &["import", &arg(&file("other.txt"))]);
    assert!(stderr(&other).contains("is this file an export"), "{}", stderr(&other));
    let missing = admin(&target, &["import", &arg(&file("nope.jsonl"))]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));

    let exists = admin(&store, &["export", &arg(&file("full.jsonl"))]);
    assert_eq!(exists.status.code(), Some(2));
    assert!(stderr(&exists).contains("--force"), "{}", stderr(&exists));
    ok(&store, &["export", &arg(&file("full.jsonl")), "--force"]);
    // A store that cannot be read leaves no file: here a snapshot that does not decode.
    let id = unique_id("corrupt");
    source
        .save_snapshot(&sayiir_persistence_conformance::fixtures::at_task(&id, "t"))
        .await
        .unwrap();
    source.write_raw_snapshot(&id, b"\xc1\x01 broken").await.unwrap();
    let failed = admin(&store, &["export", &arg(&file("broken.jsonl"))]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains(&id), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("--skip-unreadable"), "{}", stderr(&failed));
    assert!(!file("broken.jsonl").exists() && !file("broken.jsonl.partial").exists());
    // With --skip-unreadable the others are exported and the one left out is named.
    let skipping = admin(&store, &["export", &arg(&file("rest.jsonl")), "--skip-unreadable"]);
    assert!(skipping.status.success(), "{}", stderr(&skipping));
    assert!(
        stderr(&skipping)
            .contains(&format!("left out 1 workflow(s) whose snapshot cannot be decoded: {id}")),
        "{}",
        stderr(&skipping)
    );
    let rest = std::fs::read_to_string(file("rest.jsonl")).unwrap();
    let end = rest.lines().last().unwrap();
    assert!(end.starts_with("{\"end\":{\"workflows\":7,"), "{end}");
}

/// Deletes the keys matching `pattern` on every master of the test cluster.
async fn cleanup_cluster(pattern: &str) {
    for url in sayiir_persistence_conformance::servers::redis_cluster() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        if matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master") {
            common::unlink_redis_keys(&url, pattern).await;
        }
    }
}

/// A store moves from one Redis server (the single-node key layout) to a Redis Cluster (the
/// sharded layout) with `export` and `import`, as the error of a layout mismatch advises; the
/// cluster's store serves the same records, and `--index-shards` on the single-node store is
/// refused with that advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_store_moves_to_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let prefix = unique_id("admin-single");
    let single =
        RedisBackend::connect_with(&redis_url(), RedisOptions::default().key_prefix(&prefix))
            .await
            .unwrap();
    let ids = seed_every_state(&single).await;
    let from = vec!["--url".to_string(), redis_url(), "--key-prefix".to_string(), prefix.clone()];

    let mut sharded = from.clone();
    sharded.extend(["--index-shards".to_string(), "4".to_string()]);
    let refused = admin(&sharded, &["stats"]);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(message.contains("single-node") && message.contains("export"), "{message}");

    ok(&from, &["export", &file("single.jsonl")]);
    let nodes = sayiir_persistence_conformance::servers::redis_cluster().join(",");
    let cluster_prefix = unique_id("admin-cluster");
    let to = vec![
        "--url".to_string(),
        nodes.clone(),
        "--cluster".to_string(),
        "--key-prefix".to_string(),
        cluster_prefix.clone(),
    ];
    let imported = ok(&to, &["import", &file("single.jsonl")]);
    assert!(imported.contains(&format!("imported {} record(s)", ids.len())), "{imported}");
    ok(&to, &["export", &file("cluster.jsonl")]);
    // The same workflows per status on both stores (claims are not carried).
    let workflows = |store: &[String]| -> serde_json::Value {
        let stats: serde_json::Value =
            serde_json::from_str(&ok(store, &["stats", "--json"])).unwrap();
        stats["workflows"].clone()
    };
    let counted = workflows(&to);
    assert_eq!(counted, workflows(&from));
    let total: u64 = counted.as_object().unwrap().values().filter_map(|n| n.as_u64()).sum();
    assert_eq!(total, ids.len() as u64);

    let (source, before) = read_export(Path::new(&file("single.jsonl")));
    let (cluster_source, after) = read_export(Path::new(&file("cluster.jsonl")));
    assert_eq!((source.as_str(), cluster_source.as_str()), ("redis", "redis"));
    assert_same_store(&after, &before);
    let cluster = RedisBackend::connect_cluster(
        nodes.split(','),
        RedisOptions::default().key_prefix(&cluster_prefix),
    )
    .await
    .unwrap();
    for id in &ids {
        let record = cluster.export_workflow(id).await.unwrap().unwrap();
        assert_same_record(&record, &single.export_workflow(id).await.unwrap().unwrap());
    }

    cleanup_cluster(&cluster.key_pattern()).await;
    common::unlink_redis_keys(&redis_url(), &single.key_pattern()).await;
}
