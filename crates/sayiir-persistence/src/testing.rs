//! Snapshot generators for this crate's own property tests.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use sayiir_core::snapshot::{
    ExecutionPosition, TaskDeadline, TaskResult, TaskRetryState, WorkflowSnapshot,
    WorkflowSnapshotState,
};
use sayiir_core::task::RetryPolicy;

fn id() -> impl Strategy<Value = String> {
    "[a-z0-9:{}% '\u{1F980}-]{1,12}"
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Utc.timestamp_opt(s, n).single().unwrap_or_default())
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn results() -> impl Strategy<Value = HashMap<String, TaskResult>> {
    hash_map(id(), payload(), 0..4).prop_map(|m| {
        m.into_iter()
            .map(|(task_id, output)| (task_id.clone(), TaskResult { task_id, output }))
            .collect()
    })
}

fn position() -> impl Strategy<Value = ExecutionPosition> {
    prop_oneof![
        Just(ExecutionPosition::NotStarted),
        id().prop_map(|task_id| ExecutionPosition::AtTask { task_id }),
        (id(), results(), time()).prop_map(|(fork_id, completed_branches, wake_at)| {
            ExecutionPosition::AtFork { fork_id, completed_branches, wake_at }
        }),
        (id(), results()).prop_map(|(join_id, completed_branches)| ExecutionPosition::AtJoin {
            join_id,
            completed_branches
        }),
        (id(), time(), time(), option::of(id())).prop_map(
            |(delay_id, entered_at, wake_at, next)| {
                ExecutionPosition::AtDelay { delay_id, entered_at, wake_at, next_task_id: next }
            }
        ),
        (id(), id(), option::of(time()), option::of(id())).prop_map(|(sid, name, wake, next)| {
            ExecutionPosition::AtSignal {
                signal_id: sid,
                signal_name: name,
                wake_at: wake,
                next_task_id: next,
            }
        }),
        (id(), any::<u32>(), option::of(id())).prop_map(|(loop_id, iteration, next)| {
            ExecutionPosition::InLoop { loop_id, iteration, next_task_id: next }
        }),
    ]
}

fn state() -> impl Strategy<Value = WorkflowSnapshotState> {
    let text = option::of("[ -~]{0,16}");
    prop_oneof![
        (position(), results(), option::of(id())).prop_map(|(position, completed_tasks, last)| {
            WorkflowSnapshotState::InProgress {
                position,
                completed_tasks,
                last_completed_task_id: last,
            }
        }),
        payload().prop_map(|final_output| WorkflowSnapshotState::Completed { final_output }),
        "[ -~]{0,32}".prop_map(|error| WorkflowSnapshotState::Failed { error }),
        (text.clone(), text.clone(), time(), results(), option::of(id())).prop_map(
            |(reason, cancelled_by, cancelled_at, completed_tasks, interrupted_at_task)| {
                WorkflowSnapshotState::Cancelled {
                    reason,
                    cancelled_by,
                    cancelled_at,
                    completed_tasks,
                    interrupted_at_task,
                }
            }
        ),
        (text.clone(), text, time(), results(), position(), option::of(id())).prop_map(
            |(reason, paused_by, paused_at, completed_tasks, position, last)| {
                WorkflowSnapshotState::Paused {
                    reason,
                    paused_by,
                    paused_at,
                    completed_tasks,
                    position,
                    last_completed_task_id: last,
                }
            }
        ),
    ]
}

fn retry() -> impl Strategy<Value = TaskRetryState> {
    (any::<u32>(), any::<u32>(), 0u64..1_000_000, any::<f32>(), option::of(0u64..100_000))
        .prop_flat_map(|(attempts, max_retries, delay_ms, mult, max_ms)| {
            ("[ -~]{0,16}", option::of(id()), time()).prop_map(move |(err, worker, at)| {
                TaskRetryState {
                    attempts,
                    policy: RetryPolicy {
                        max_retries,
                        initial_delay: std::time::Duration::from_millis(delay_ms),
                        backoff_multiplier: if mult.is_finite() { mult } else { 2.0 },
                        max_delay: max_ms.map(std::time::Duration::from_millis),
                    },
                    last_error: err,
                    last_failed_worker: worker,
                    next_retry_at: at,
                }
            })
        })
}

/// Any snapshot: every state, every position, every optional field present or absent.
pub(crate) fn snapshot_strategy() -> impl Strategy<Value = WorkflowSnapshot> {
    (
        (id(), id(), state(), any::<u64>(), any::<u64>(), option::of(payload())),
        option::of((id(), time(), any::<u64>())),
        hash_map(id(), retry(), 0..3),
        hash_map(id(), any::<u32>(), 0..3),
        option::of(any::<u8>()),
        vec(id(), 0..3),
        option::of("[ -~]{0,20}"),
    )
        .prop_map(
            |(
                (instance_id, definition_hash, state, created_at, updated_at, initial_input),
                deadline,
                task_retries,
                loop_iterations,
                task_priority,
                task_tags,
                trace_parent,
            )| WorkflowSnapshot {
                instance_id,
                definition_hash,
                state,
                created_at,
                updated_at,
                initial_input,
                task_deadline: deadline.map(|(task_id, deadline, timeout_ms)| TaskDeadline {
                    task_id,
                    deadline,
                    timeout_ms,
                }),
                task_retries,
                loop_iterations,
                task_priority,
                task_tags,
                trace_parent,
            },
        )
}

/// An in-progress snapshot at `AtTask` with `tasks` results of `size` bytes each.
pub(crate) fn snapshot_with_results(tasks: usize, size: usize) -> WorkflowSnapshot {
    let mut snapshot =
        WorkflowSnapshot::with_initial_input("bench".into(), "hash".into(), Bytes::from("input"));
    for i in 0..tasks {
        snapshot.mark_task_completed(
            format!("task-{i}"),
            Bytes::from((0..size).map(|j| ((i * 31 + j * 7) % 256) as u8).collect::<Vec<_>>()),
        );
    }
    snapshot.update_position(ExecutionPosition::AtTask { task_id: format!("task-{tasks}") });
    snapshot
}
