#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a failed unwrap is a failed case
#![doc = include_str!("../README.md")]

mod harness;

pub mod fixtures;
pub mod private;
pub mod servers;

pub mod bad_input;
pub mod claims;
pub mod concurrency;
pub mod events;
pub mod find;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod retention;
pub mod signals;
pub mod snapshots;
pub mod statistics;
pub mod task_results;
pub mod transfer;

#[cfg(feature = "runtime")]
pub mod runtime;

pub use harness::{FullBackend, Harness, run_case};
#[cfg(feature = "runtime")]
pub use runtime::RuntimeHarness;

#[doc(hidden)]
pub mod __private {
    pub use crate::harness::run_case;
}

/// Expands into one `#[test]` per conformance case for a [`Harness`] type.
///
/// `conformance_suite!(H)` runs every group of the 0.4.0 traits; `conformance_suite!(H;
/// group, ...)` only those named. The groups of the extension traits run only when named:
/// `retention` (`RetentionStore`, `WorkflowListing`), `transfer` (`WorkflowTransfer`) and
/// `statistics` (`StoreStatistics`), as in `conformance_suite!(H; retention, transfer,
/// statistics)`. Each test builds a multi-threaded tokio runtime, as `#[tokio::test(flavor =
/// "multi_thread")]` would, without requiring the caller to depend on tokio.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::__every_group!($harness);
    };
    ($harness:ty; $($group:ident),+ $(,)?) => {
        $( $crate::__conformance_group!($group, $harness); )+
    };
}

/// Every group: with the `runtime` feature of this crate, the `runtime` group too.
#[cfg(feature = "runtime")]
#[doc(hidden)]
#[macro_export]
macro_rules! __every_group {
    ($harness:ty) => {
        $crate::conformance_suite!(
            $harness;
            snapshots, signals, events, claims, find, task_results, bad_input, concurrency, runtime
        );
    };
}

/// Every group (the `runtime` group needs this crate's `runtime` feature).
#[cfg(not(feature = "runtime"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __every_group {
    ($harness:ty) => {
        $crate::conformance_suite!(
            $harness;
            snapshots, signals, events, claims, find, task_results, bad_input, concurrency
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($harness:ty, $group:ident, [$($case:ident),* $(,)?]) => {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[test]
            fn $case() {
                $crate::__private::run_case::<$harness, _, _>($crate::$group::$case::<$harness>);
            }
        )*
    };
}

/// The cases of each group. `every_case_is_listed` (below) checks that this list and the
/// public functions of each group module agree.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_group {
    (snapshots, $h:ty) => {
        mod snapshots {
            $crate::__conformance_tests!(
                $h,
                snapshots,
                [
                    round_trip_fully_populated,
                    round_trip_not_started,
                    round_trip_at_fork,
                    round_trip_at_join,
                    round_trip_at_delay,
                    round_trip_at_signal,
                    round_trip_in_loop,
                    round_trip_completed,
                    round_trip_failed,
                    round_trip_cancelled,
                    round_trip_paused,
                    empty_and_missing_input_are_distinct,
                    timestamps_stored_verbatim,
                    extreme_timestamps_stored_verbatim,
                    priority_and_tag_order_kept,
                    overwrite_replaces_completed_tasks,
                    overwrite_replaces_every_field,
                    overwrite_replaces_trace_parent,
                    overwrite_terminal_with_in_progress,
                    load_missing_not_found,
                    delete_then_load_not_found,
                    delete_missing_not_found,
                    delete_twice_not_found,
                    delete_leaves_others_alone,
                    list_contains_every_state,
                    list_has_each_id_once,
                    save_task_result_missing_not_found,
                    save_task_result_updates_only_result,
                    save_task_result_overwrites_same_task,
                    save_task_result_on_completed_is_noop,
                    save_task_result_on_other_states_is_noop,
                    delete_cascades_signals,
                    delete_cascades_claims,
                    delete_cascades_events,
                    delete_cascades_archive,
                    resave_after_delete_starts_clean,
                    save_does_not_advance,
                ]
            );
        }
    };
    (signals, $h:ty) => {
        mod signals {
            $crate::__conformance_tests!(
                $h,
                signals,
                [
                    cancel_in_progress_is_stored,
                    pause_in_progress_is_stored,
                    cancel_paused_is_stored,
                    pause_paused_is_idempotent,
                    cancel_cancelled_is_idempotent,
                    pause_cancelled_cannot_pause,
                    cancel_completed_cannot_cancel,
                    pause_completed_cannot_pause,
                    cancel_failed_cannot_cancel,
                    pause_failed_cannot_pause,
                    store_signal_missing_not_found,
                    store_overwrites_previous,
                    requested_at_round_trips,
                    get_signal_unknown_is_none,
                    clear_signal_is_idempotent,
                    clear_one_kind_keeps_other,
                    signals_isolated_per_instance,
                    store_signal_leaves_snapshot_alone,
                    check_and_cancel_without_signal_or_snapshot,
                    check_and_cancel_without_signal_touches_nothing,
                    check_and_cancel_after_delete_is_false,
                    check_and_cancel_paused_keeps_signal,
                    check_and_cancel_completed_is_false,
                    check_and_cancel_cancels,
                    check_and_cancel_without_task_then_false,
                    check_and_pause_without_signal_or_snapshot,
                    check_and_pause_without_signal_touches_nothing,
                    check_and_pause_pauses_and_preserves,
                    check_and_pause_preserves_parked_position,
                    check_and_pause_not_in_progress_keeps_signal,
                    cancel_wins_over_pause,
                    unpause_missing_not_found,
                    unpause_in_progress_cannot_pause,
                    unpause_completed_cannot_pause,
                    unpause_cancelled_or_failed_cannot_pause,
                    unpause_restores_and_returns_stored,
                    unpause_removes_pending_pause,
                    unpause_keeps_pending_cancel,
                    unpause_twice_cannot_pause,
                    pause_unpause_cycle,
                    cancel_after_unpause_keeps_every_result,
                    pause_then_unpause_keeps_position_and_last,
                    save_after_transitions_is_loaded_as_saved,
                    requested_at_extremes_round_trip,
                ]
            );
        }
    };
    (events, $h:ty) => {
        mod events {
            $crate::__conformance_tests!(
                $h,
                events,
                [
                    fifo_order,
                    fifo_over_many_events,
                    fifo_interleaved,
                    isolated_by_name,
                    isolated_by_instance,
                    colon_ids_do_not_collide,
                    unknown_instance_accepted,
                    events_survive_first_save,
                    terminal_instance_accepted,
                    empty_queue_is_none,
                    drained_queue_is_reusable,
                    duplicates_kept,
                    empty_payload_kept,
                    binary_payload_intact,
                    send_event_leaves_snapshot_alone,
                ]
            );
        }
    };
    (claims, $h:ty) => {
        mod claims {
            $crate::__conformance_tests!(
                $h,
                claims,
                [
                    claim_free_task_fields,
                    claim_without_snapshot,
                    live_claim_blocks_others,
                    live_claim_blocks_holder,
                    zero_ttl_is_replaceable,
                    negative_ttl_is_replaceable,
                    no_ttl_never_expires,
                    huge_ttl_never_expires,
                    calendar_overflow_ttl_blocks,
                    claims_are_per_task,
                    colon_ids_do_not_collide,
                    release_by_owner,
                    release_by_other_is_backend_error,
                    release_expired_by_other_is_refused,
                    release_missing_not_found,
                    release_twice_not_found,
                    extend_counts_from_old_expiry,
                    extend_moves_expiry,
                    extend_by_owner_keeps_claim,
                    extend_overflow_never_expires,
                    extend_by_other_is_backend_error,
                    extend_missing_not_found,
                    extend_no_ttl_stays_forever,
                    refused_on_completed,
                    refused_on_failed,
                    refused_on_cancelled,
                    refused_on_completed_task,
                    allowed_on_pending_task,
                    allowed_on_paused_workflow,
                    allowed_after_loop_removed_result,
                    refusal_then_reopen,
                    find_purges_expired_claims,
                    hugely_negative_ttl_is_replaceable,
                    hugely_negative_extension_expires,
                ]
            );
        }
    };
    (find, $h:ty) => {
        mod find {
            $crate::__conformance_tests!(
                $h,
                find,
                [
                    returns_ready_task,
                    skips_completed,
                    skips_failed,
                    skips_cancelled,
                    skips_paused,
                    skips_pending_cancel,
                    skips_pending_pause,
                    skips_not_started,
                    skips_at_fork,
                    skips_at_join,
                    skips_in_loop,
                    skips_completed_current_task,
                    skips_task_completed_by_save_task_result,
                    live_claim_hides,
                    no_ttl_claim_hides,
                    expired_claim_does_not_hide,
                    backoff_pending_hides,
                    backoff_elapsed_shows,
                    backoff_holds_to_the_millisecond,
                    no_input_hides,
                    empty_initial_input_is_an_input,
                    input_is_initial_input,
                    input_is_last_output,
                    input_follows_save_task_result,
                    hash_and_trace_parent_returned,
                    untagged_worker_accepts_tagged,
                    tagged_worker_accepts_untagged,
                    subset_tags_accepted,
                    non_subset_tags_rejected,
                    disjoint_tags_rejected,
                    tags_case_sensitive,
                    priority_order,
                    aging_overtakes_priority,
                    max_aging_keeps_priority_order,
                    zero_and_negative_aging,
                    bias_sinks_failed_here,
                    bias_still_returns_lone_task,
                    tie_break_updated_at_then_instance_id,
                    limit_one_returns_best,
                    limit_truncates_after_sorting,
                    limit_zero_is_empty,
                    due_delay_advanced_and_returned,
                    due_delay_returned_with_limit_one,
                    delay_not_due_untouched,
                    last_node_delay_completes_with_passthrough,
                    last_node_delay_completes_empty,
                    signal_event_advances,
                    signal_event_consumes_only_oldest,
                    signal_timeout_advances,
                    signal_last_node_completes,
                    advanced_then_cancelled_keeps_the_signal_result,
                    signal_wait_not_due_untouched,
                    pending_cancel_blocks_advancement,
                    pending_pause_blocks_advancement,
                    paused_due_delay_not_advanced,
                    unpaused_workflow_is_scheduled,
                    advanced_task_then_claimed_is_hidden,
                    many_parked_do_not_hide_ready,
                    corrupted_row_does_not_fail_find,
                    corrupted_best_row_does_not_hide_the_next,
                    corrupted_parked_rows_do_not_block_advancement,
                    corrupted_parked_row_does_not_fail_find,
                    find_has_no_side_effect_on_ready_task,
                    future_stamp_sorts_last,
                ]
            );
        }
    };
    (task_results, $h:ty) => {
        mod task_results {
            $crate::__conformance_tests!(
                $h,
                task_results,
                [
                    in_progress_reads_snapshot,
                    save_task_result_is_readable,
                    paused_reads_snapshot,
                    cancelled_reads_snapshot,
                    cancelled_by_guard_reads_snapshot,
                    completed_reads_archive,
                    failed_reads_archive,
                    save_task_result_results_are_archived,
                    archive_survives_terminal_resave,
                    created_completed_has_no_results,
                    unknown_instance_not_found,
                    loop_removed_result_is_none,
                    archive_is_last_stored_state,
                    cancelled_then_completed_archives,
                    reopened_reads_new_snapshot,
                    archive_gone_after_delete,
                    empty_and_binary_results_exact,
                ]
            );
        }
    };
    (bad_input, $h:ty) => {
        mod bad_input {
            $crate::__conformance_tests!(
                $h,
                bad_input,
                [
                    save_snapshot_rejects_bad_instance_id,
                    save_task_result_rejects_bad_ids,
                    load_and_delete_reject_bad_ids,
                    signal_methods_reject_bad_ids,
                    send_event_rejects_bad_ids,
                    consume_event_rejects_bad_ids,
                    guards_reject_bad_ids,
                    claim_rejects_bad_ids,
                    release_rejects_bad_ids,
                    extend_rejects_bad_ids,
                    find_rejects_bad_worker_id,
                    load_task_result_rejects_bad_ids,
                    validation_comes_before_lookup,
                    max_length_ids_work,
                    special_ids_snapshots_verbatim,
                    special_ids_claims_verbatim,
                    special_ids_events_verbatim,
                    special_ids_signals_verbatim,
                    special_ids_find_and_results_verbatim,
                    task_result_payloads_exact,
                    event_payloads_exact,
                    snapshot_payloads_exact,
                    completed_payloads_exact,
                    corrupted_snapshot_is_serialization_error,
                    corruption_is_contained,
                    corrupted_snapshot_can_be_overwritten_or_deleted,
                    shared_codec_blob_loads,
                    legacy_json_blob_loads,
                    save_snapshot_rejects_bad_fields_inside,
                    store_signal_rejects_nul_in_free_text,
                ]
            );
        }
    };
    (concurrency, $h:ty) => {
        mod concurrency {
            $crate::__conformance_tests!(
                $h,
                concurrency,
                [
                    claim_race_one_winner,
                    claim_race_over_expired_claim,
                    concurrent_claims_of_distinct_tasks_all_win,
                    concurrent_save_task_result_all_kept,
                    concurrent_consumers_no_duplicates_no_loss,
                    concurrent_senders_and_consumers,
                    concurrent_check_and_cancel_one_winner,
                    concurrent_check_and_pause_one_winner,
                    cancel_and_pause_race_one_transition,
                    concurrent_unpause_one_winner,
                    concurrent_release_one_winner,
                    release_by_other_never_deletes_under_contention,
                    concurrent_find_advances_delay_once,
                    concurrent_find_advances_signal_once,
                    find_never_regresses_position,
                    concurrent_saves_never_torn,
                ]
            );
        }
    };
    (retention, $h:ty) => {
        mod retention {
            $crate::__conformance_tests!(
                $h,
                retention,
                [
                    prune_removes_finished_before_the_cutoff,
                    prune_removes_everything_stored,
                    prune_filters_by_definition,
                    prune_batches_take_the_oldest_first,
                    prune_rejects_bad_requests,
                    list_pages_newest_first,
                    list_filters_by_status_and_definition,
                    listing_follows_every_writer,
                    undecodable_rows_are_listed_and_pruned,
                    list_rejects_bad_requests,
                ]
            );
        }
    };
    (transfer, $h:ty) => {
        mod transfer {
            $crate::__conformance_tests!(
                $h,
                transfer,
                [
                    every_state_survives_export_and_import,
                    export_leaves_the_store_unchanged,
                    import_skips_what_is_stored,
                    unstarted_queues_are_listed_and_carried,
                    imported_workflows_are_scheduled_as_before,
                    bad_records_are_refused,
                    task_claims_lists_live_claims,
                    undecodable_snapshot_fails_its_export,
                ]
            );
        }
    };
    (statistics, $h:ty) => {
        mod statistics {
            $crate::__conformance_tests!($h, statistics, [counts_follow_the_store]);
        }
    };
    (runtime, $h:ty) => {
        mod runtime {
            $crate::__conformance_tests!(
                $h,
                runtime,
                [
                    sequence_runs_each_step_once,
                    crash_mid_step_resumes_from_checkpoint,
                    fork_join_runs_each_branch_once,
                    delay_parks_then_resumes,
                    signal_waits_then_event_resumes,
                    event_sent_early_is_consumed,
                    cancel_through_client,
                    cancel_during_a_step_stops_after_it,
                    pause_and_unpause_through_client,
                    retries_with_backoff,
                    failing_step_fails_the_workflow,
                    loop_runs_until_done,
                    route_runs_one_branch,
                    child_workflow_runs_inline,
                    submit_then_resume,
                    contending_workers_run_each_task_once,
                    priority_decides_the_order,
                    worker_tags_route_tasks,
                    workers_retry_with_backoff,
                    cancel_while_a_worker_runs_a_task,
                    pause_and_unpause_with_workers,
                    crashed_worker_task_is_taken_over,
                ]
            );
        }
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of a group module is listed in `__conformance_group`, and every
    /// listed name exists (the compiler checks the second half when a backend expands it).
    #[test]
    fn every_case_is_listed() {
        let lib = include_str!("lib.rs");
        let groups = [
            ("snapshots", include_str!("snapshots.rs")),
            ("signals", include_str!("signals.rs")),
            ("events", include_str!("events.rs")),
            ("claims", include_str!("claims.rs")),
            ("find", include_str!("find.rs")),
            ("task_results", include_str!("task_results.rs")),
            ("bad_input", include_str!("bad_input.rs")),
            ("concurrency", include_str!("concurrency.rs")),
            ("retention", include_str!("retention.rs")),
            ("transfer", include_str!("transfer.rs")),
            ("statistics", include_str!("statistics.rs")),
            ("runtime", include_str!("runtime/runner.rs")),
            ("runtime", include_str!("runtime/workers.rs")),
        ];
        let mut total = 0;
        for (group, source) in groups {
            let start = lib
                .find(&format!("({group}, $h:ty)"))
                .unwrap_or_else(|| panic!("group {group} missing from the macro"));
            // The case list is the first `[...]` of the group's arm.
            let open = start + lib[start..].find('[').unwrap();
            let listed = &lib[open..open + lib[open..].find(']').unwrap()];
            for line in source.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else { continue };
                let name = rest.split(['<', '(']).next().unwrap();
                assert!(
                    listed.split([',', '[', ']']).any(|listed| listed.trim() == name),
                    "case {group}::{name} is not listed in __conformance_group"
                );
                total += 1;
            }
        }
        assert!(total > 0);
    }
}
