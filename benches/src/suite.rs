//! The benchmark suite: every workload, at concurrency 1 and 16, beside the raw limit.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use sayiir_persistence::codec::encode_snapshot;
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};
use tokio::runtime::Runtime;

use crate::record::{self, Line};
use crate::workload::{
    OUTPUT_BYTES, checkpointing_run, next_seq, output, parked, pooled_worker_task, ready, timed,
    with_tasks,
};
use crate::{RawLimit, Target};

/// Concurrency levels of the single-operation workloads.
const LEVELS: [usize; 2] = [1, 16];
/// Snapshot sizes, in completed 1 KiB tasks.
const SIZES: [usize; 3] = [0, 10, 100];
/// Stored workflow counts for `find_available_tasks`.
const STORES: [usize; 3] = [1_000, 10_000, 100_000];

/// Runs every workload against `T` and prints (and writes) the report.
///
/// `target_ratio` is the share of the raw limit the hot paths must reach (`None`: no raw
/// limit to compare with). Set `SAYIIR_BENCH_THOROUGH=1` for longer, steadier measurements;
/// the default keeps a run of every backend under 15 minutes on 2 cores.
pub fn run<T: Target>(target_ratio: Option<f64>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let thorough = std::env::var("SAYIIR_BENCH_THOROUGH").is_ok_and(|v| v == "1");
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if thorough { 1000 } else { 300 }))
        .measurement_time(Duration::from_millis(if thorough { 5000 } else { 1200 }))
        .configure_from_args();
    record::reset();
    let mut suite = Suite::<T> {
        runtime,
        lines: Vec::new(),
        notes: Vec::new(),
        target_ratio,
        _t: std::marker::PhantomData,
    };
    let target = Arc::new(suite.runtime.block_on(T::open()));
    let about = suite.runtime.block_on(target.describe());
    suite.raw_limits(&mut criterion, &target);
    suite.snapshots(&mut criterion, &target);
    suite.task_results(&mut criterion, &target);
    suite.guards(&mut criterion, &target);
    suite.claims(&mut criterion, &target);
    suite.events_and_archive(&mut criterion, &target);
    suite.runtime_sequences(&mut criterion, &target);
    suite.storage();
    suite.runtime.block_on(target.cleanup());
    suite.find(&mut criterion);
    criterion.final_summary();

    let report = record::report(T::NAME, &about, &suite.lines, &suite.notes);
    println!("\n{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sayiir-bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{}.md", T::NAME)), report);
}

struct Suite<T> {
    runtime: Runtime,
    lines: Vec<Line>,
    notes: Vec<String>,
    target_ratio: Option<f64>,
    _t: std::marker::PhantomData<T>,
}

/// Blob size of a snapshot with `tasks` results: the payload the raw limit moves.
fn blob_bytes(tasks: usize) -> usize {
    encode_snapshot(&with_tasks("size", tasks)).map(|b| b.len()).unwrap_or(OUTPUT_BYTES)
}

fn raw_key(kind: &str, bytes: usize) -> String {
    format!("raw {kind} {bytes} B")
}

impl<T: Target> Suite<T> {
    /// Measures `op` at `concurrency`: `call(target, worker, seq)` runs one call and returns
    /// the time that counts (setup inside it is excluded at concurrency 1).
    fn measure<S, F, Fut>(
        &self,
        c: &mut Criterion,
        state: &Arc<S>,
        op: &str,
        concurrency: usize,
        call: F,
    ) where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, usize, u64) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Duration> + Send + 'static,
    {
        let name = op.to_string();
        c.bench_function(&format!("{}/{op}/c{concurrency}", T::NAME), |b| {
            b.to_async(&self.runtime).iter_custom(|iters| {
                let (call, state, name) = (call.clone(), Arc::clone(state), name.clone());
                async move {
                    let per_worker = iters.div_ceil(concurrency as u64).max(1);
                    let start = Instant::now();
                    let workers: Vec<_> = (0..concurrency)
                        .map(|worker| {
                            let (call, state) = (call.clone(), Arc::clone(&state));
                            tokio::spawn(async move {
                                let mut latencies = Vec::with_capacity(per_worker as usize);
                                for _ in 0..per_worker {
                                    latencies
                                        .push(call(Arc::clone(&state), worker, next_seq()).await);
                                }
                                latencies
                            })
                        })
                        .collect();
                    let mut latencies = Vec::new();
                    for worker in workers {
                        latencies.extend(worker.await.unwrap());
                    }
                    let wall = start.elapsed();
                    // Alone, only the timed part of each call counts; with concurrent callers,
                    // throughput is calls over wall-clock time, so concurrent workloads do no
                    // untimed setup.
                    let counted = if concurrency == 1 { latencies.iter().sum() } else { wall };
                    let calls = latencies.len() as u64;
                    record::record(&name, concurrency, counted, latencies);
                    counted.mul_f64(iters as f64 / calls as f64)
                }
            });
        });
    }

    fn line(&mut self, op: &str, concurrency: usize, raw: Option<(String, f64)>, targeted: bool) {
        let target = if targeted && raw.is_some() { self.target_ratio } else { None };
        self.lines.push(Line { op: op.to_string(), concurrency, raw, target });
    }

    fn raw_limits(&mut self, c: &mut Criterion, target: &Arc<T>) {
        let sizes: Vec<usize> =
            [16, OUTPUT_BYTES].into_iter().chain(SIZES.iter().map(|&t| blob_bytes(t))).collect();
        for concurrency in LEVELS {
            // One held connection per concurrent task, as the raw limit allows.
            let clients: Vec<T::Raw> = self
                .runtime
                .block_on(async {
                    futures::future::join_all((0..concurrency).map(|_| target.raw())).await
                })
                .into_iter()
                .flatten()
                .collect();
            if clients.len() != concurrency {
                return;
            }
            let clients = Arc::new(clients);
            for &bytes in &sizes {
                // Two values that differ, written in turn: a database may skip rewriting a
                // row whose bytes do not change (SQLite does), which no real write enjoys.
                let values = [Bytes::from(vec![7u8; bytes]), Bytes::from(vec![8u8; bytes])];
                let key = |w: usize| format!("raw-{bytes}-{w}");
                self.runtime.block_on(async {
                    for (w, client) in clients.iter().enumerate() {
                        client.write(&key(w), &values[0]).await;
                    }
                });
                let write = raw_key("write", bytes);
                self.measure(c, &clients, &write, concurrency, move |clients, w, seq| {
                    let value = values[(seq % 2) as usize].clone();
                    async move { timed(clients[w].write(&format!("raw-{bytes}-{w}"), &value)).await.1 }
                });
                let read = raw_key("read", bytes);
                self.measure(c, &clients, &read, concurrency, move |clients, w, _| async move {
                    timed(clients[w].read(&format!("raw-{bytes}-{w}"))).await.1
                });
                self.line(&write, concurrency, None, false);
                self.line(&read, concurrency, None, false);
            }
        }
    }

    fn snapshots(&mut self, c: &mut Criterion, target: &Arc<T>) {
        for tasks in SIZES {
            let blob = blob_bytes(tasks);
            for concurrency in LEVELS {
                let ids: Vec<String> =
                    (0..concurrency).map(|w| format!("snap-{tasks}-{w}-{}", next_seq())).collect();
                let snapshots: Vec<_> = ids.iter().map(|id| with_tasks(id, tasks)).collect();
                self.runtime.block_on(target.seed(snapshots.clone()));
                let state = Arc::new((Arc::clone(target), snapshots));
                let save = format!("save_snapshot {tasks} tasks");
                self.measure(c, &state, &save, concurrency, |s, w, _| async move {
                    timed(s.0.backend().save_snapshot(&s.1[w])).await.1
                });
                let load = format!("load_snapshot {tasks} tasks");
                self.measure(c, &state, &load, concurrency, |s, w, _| async move {
                    let id = s.1[w].instance_id.clone();
                    timed(s.0.backend().load_snapshot(&id)).await.1
                });
                self.line(&save, concurrency, Some((raw_key("write", blob), 1.0)), true);
                self.line(&load, concurrency, Some((raw_key("read", blob), 1.0)), true);
            }
        }
    }

    fn task_results(&mut self, c: &mut Criterion, target: &Arc<T>) {
        for tasks in [10, 100] {
            for concurrency in LEVELS {
                let ids: Vec<String> = (0..concurrency)
                    .map(|w| format!("result-{tasks}-{w}-{}", next_seq()))
                    .collect();
                self.runtime
                    .block_on(target.seed(ids.iter().map(|id| with_tasks(id, tasks)).collect()));
                let state = Arc::new((Arc::clone(target), ids, output(99)));
                let op = format!("save_task_result on {tasks} tasks");
                self.measure(c, &state, &op, concurrency, |s, w, _| async move {
                    let out = s.2.clone();
                    timed(s.0.backend().save_task_result(&s.1[w], "live", out)).await.1
                });
                self.line(&op, concurrency, Some((raw_key("write", OUTPUT_BYTES), 1.0)), true);
            }
        }
    }

    fn guards(&mut self, c: &mut Criterion, target: &Arc<T>) {
        for concurrency in LEVELS {
            let ids: Vec<String> =
                (0..concurrency).map(|w| format!("guard-{w}-{}", next_seq())).collect();
            self.runtime.block_on(target.seed(ids.iter().map(|id| with_tasks(id, 1)).collect()));
            let state = Arc::new((Arc::clone(target), ids));
            for (op, cancel) in
                [("check_and_cancel (no signal)", true), ("check_and_pause (no signal)", false)]
            {
                self.measure(c, &state, op, concurrency, move |s, w, _| async move {
                    let id = &s.1[w];
                    let (pending, took) = if cancel {
                        timed(s.0.backend().check_and_cancel(id, Some("next"))).await
                    } else {
                        timed(s.0.backend().check_and_pause(id)).await
                    };
                    assert!(!pending.unwrap());
                    took
                });
                self.line(op, concurrency, Some((raw_key("read", 16), 1.0)), true);
            }
        }
    }

    fn claims(&mut self, c: &mut Criterion, target: &Arc<T>) {
        let ttl = Some(chrono::Duration::minutes(5));
        for concurrency in LEVELS {
            let state = Arc::new(Arc::clone(target));
            self.measure(c, &state, "claim_task", concurrency, move |t, w, seq| async move {
                let (claim, took) = timed(t.backend().claim_task(
                    &format!("claim-{w}"),
                    &format!("t{seq}"),
                    "worker",
                    ttl,
                ))
                .await;
                assert!(claim.unwrap().is_some());
                took
            });
            self.line("claim_task", concurrency, Some((raw_key("write", 16), 1.0)), true);
            // The worker's pair: a release always follows a claim.
            let pair = "claim_task + release_task_claim";
            self.measure(c, &state, pair, concurrency, move |t, w, seq| async move {
                let (id, task) = (format!("pair-{w}"), format!("t{seq}"));
                let start = Instant::now();
                t.backend().claim_task(&id, &task, "worker", ttl).await.unwrap().unwrap();
                t.backend().release_task_claim(&id, &task, "worker").await.unwrap();
                start.elapsed()
            });
            self.line(pair, concurrency, Some((raw_key("write", 16), 2.0)), true);
        }
        // Release alone needs a claim made first, outside the timed part: measured alone.
        let state = Arc::new(Arc::clone(target));
        self.measure(c, &state, "release_task_claim", 1, move |t, w, seq| async move {
            let (id, task) = (format!("release-{w}"), format!("t{seq}"));
            t.backend().claim_task(&id, &task, "worker", ttl).await.unwrap().unwrap();
            timed(t.backend().release_task_claim(&id, &task, "worker")).await.1
        });
        self.line("release_task_claim", 1, Some((raw_key("write", 16), 1.0)), true);
        // 16 workers race for one task; the winner releases it. One call = one round.
        let state = Arc::new(Arc::clone(target));
        self.measure(
            c,
            &state,
            "16 workers contend for one claim",
            1,
            move |t, _, seq| async move {
                let task = format!("t{seq}");
                let start = Instant::now();
                let racers: Vec<_> = (0..16)
                    .map(|w| {
                        let (t, task) = (Arc::clone(&t), task.clone());
                        tokio::spawn(async move {
                            let worker = format!("w{w}");
                            let won = t
                                .backend()
                                .claim_task("contended", &task, &worker, ttl)
                                .await
                                .unwrap();
                            (won.is_some(), worker)
                        })
                    })
                    .collect();
                let mut winners = Vec::new();
                for racer in racers {
                    let (won, worker) = racer.await.unwrap();
                    if won {
                        winners.push(worker);
                    }
                }
                assert_eq!(winners.len(), 1, "exactly one worker wins a claim");
                t.backend().release_task_claim("contended", &task, &winners[0]).await.unwrap();
                start.elapsed()
            },
        );
        self.line("16 workers contend for one claim", 1, None, false);
    }

    fn events_and_archive(&mut self, c: &mut Criterion, target: &Arc<T>) {
        let completed = format!("archive-{}", next_seq());
        self.runtime.block_on(async {
            let mut snapshot = with_tasks(&completed, 10);
            target.backend().save_snapshot(&snapshot).await.unwrap();
            snapshot.mark_completed(output(10));
            target.backend().save_snapshot(&snapshot).await.unwrap();
        });
        for concurrency in LEVELS {
            let state = Arc::new((Arc::clone(target), completed.clone(), output(1)));
            self.measure(
                c,
                &state,
                "send_event + consume_event",
                concurrency,
                |s, w, _| async move {
                    let id = format!("events-{w}");
                    let start = Instant::now();
                    s.0.backend().send_event(&id, "signal", s.2.clone()).await.unwrap();
                    assert!(s.0.backend().consume_event(&id, "signal").await.unwrap().is_some());
                    start.elapsed()
                },
            );
            self.measure(
                c,
                &state,
                "load_task_result (Completed)",
                concurrency,
                |s, _, _| async move {
                    let (out, took) = timed(s.0.backend().load_task_result(&s.1, "task-3")).await;
                    assert!(out.unwrap().is_some());
                    took
                },
            );
            self.line(
                "send_event + consume_event",
                concurrency,
                Some((raw_key("write", OUTPUT_BYTES), 2.0)),
                false,
            );
            self.line(
                "load_task_result (Completed)",
                concurrency,
                Some((raw_key("read", OUTPUT_BYTES), 1.0)),
                false,
            );
        }
    }

    fn runtime_sequences(&mut self, c: &mut Criterion, target: &Arc<T>) {
        for concurrency in LEVELS {
            let state = Arc::new(Arc::clone(target));
            let op = "CheckpointingRunner: 10 tasks (53 calls)";
            self.measure(c, &state, op, concurrency, |t, w, seq| async move {
                let id = format!("runner-{w}-{seq}");
                timed(checkpointing_run(t.backend(), &id, 10)).await.1
            });
            self.line(op, concurrency, None, false);

            // A store of its own: a tagged worker also takes untagged tasks, and the other
            // workloads leave ready workflows behind. Each worker has one workflow of its own.
            let pool = Arc::new(self.runtime.block_on(T::open()));
            let tags: Vec<Vec<String>> =
                (0..concurrency).map(|w| vec![format!("pool-{w}")]).collect();
            let workflows = tags
                .iter()
                .enumerate()
                .map(|(w, tag)| ready(&format!("pooled-{w}"), 3, tag))
                .collect();
            self.runtime.block_on(pool.seed(workflows));
            let state = Arc::new((Arc::clone(&pool), tags));
            let op = "PooledWorker: one task (9 calls)";
            self.measure(c, &state, op, concurrency, |s, w, _| async move {
                timed(pooled_worker_task(s.0.backend(), &format!("worker-{w}"), &s.1[w])).await.1
            });
            self.line(op, concurrency, None, false);
            self.runtime.block_on(pool.cleanup());
        }
    }

    fn storage(&mut self) {
        const WORKFLOWS: usize = 200;
        let measured = self.runtime.block_on(async {
            let target = T::open().await;
            let ids: Vec<String> = (0..WORKFLOWS).map(|i| format!("storage-{i}")).collect();
            for id in &ids {
                target.backend().save_snapshot(&with_tasks(id, 10)).await.unwrap();
            }
            let bytes = target.storage_bytes(&ids).await;
            target.cleanup().await;
            bytes
        });
        let payload = 10 * OUTPUT_BYTES;
        let note = match measured {
            Some(total) => {
                let per = total as f64 / WORKFLOWS as f64;
                let ratio = per / payload as f64;
                let verdict = if ratio <= 1.5 { "met" } else { "**missed**" };
                format!(
                    "Storage: a workflow of 10 completed 1 KiB tasks takes {per:.0} B \
                     ({ratio:.2}× its {payload} B payload; target ≤ 1.5×: {verdict})."
                )
            }
            None => "Storage: not measurable for this backend.".to_string(),
        };
        self.notes.push(note);
    }

    fn find(&mut self, c: &mut Criterion) {
        for parked_mode in [false, true] {
            let target = Arc::new(self.runtime.block_on(T::open()));
            let mode = if parked_mode { "all parked but one" } else { "all ready" };
            let mut stored = 0;
            let mut costs = Vec::new();
            for total in STORES {
                let batch: Vec<_> = (stored..total)
                    .map(|i| {
                        let id = format!("find-{i:06}");
                        // Priorities spread over every level, as real queues have.
                        if parked_mode { parked(&id) } else { ready(&id, (i % 5) as u8 + 1, &[]) }
                    })
                    .collect();
                self.runtime.block_on(target.seed(batch));
                if parked_mode && stored == 0 {
                    self.runtime.block_on(target.seed(vec![ready("find-the-ready-one", 5, &[])]));
                }
                stored = total;
                for limit in [1usize, 10] {
                    let op = format!("find_available_tasks limit {limit}, {total} {mode}");
                    let state = Arc::new(Arc::clone(&target));
                    self.measure(c, &state, &op, 1, move |t, _, _| async move {
                        let (found, took) = timed(t.backend().find_available_tasks(
                            "finder",
                            limit,
                            chrono::Duration::seconds(300),
                            &[],
                        ))
                        .await;
                        let found = found.unwrap();
                        assert_eq!(found.len(), if parked_mode { 1 } else { limit });
                        took
                    });
                    self.line(&op, 1, None, false);
                    if limit == 1 {
                        costs.push(record::stats(&op, 1).map(|s| 1.0 / s.ops_per_sec));
                    }
                }
            }
            if let (Some(Some(small)), Some(Some(large))) = (costs.first(), costs.last()) {
                let growth = large / small;
                let verdict = if growth <= 2.0 { "met" } else { "**missed**" };
                self.notes.push(format!(
                    "find_available_tasks(limit 1), {mode}: 100,000 workflows cost {growth:.2}× \
                     what 1,000 cost (target ≤ 2×: {verdict})."
                ));
            }
            self.runtime.block_on(target.cleanup());
        }
    }
}
