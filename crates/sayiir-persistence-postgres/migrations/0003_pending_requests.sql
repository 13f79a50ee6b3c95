-- A workflow with a pending cancel or pause leaves the scheduling indexes.
--
-- find_available_tasks neither returns nor advances such a workflow (§ Advancing parked workflows,
-- § Eligibility rules), and the request can stay pending for good (§ Requests for unclaimed
-- workflows are never applied): kept in the partial indexes, every poll would walk past it again.
-- `signal_pending` is kept by the statements that write the signals table, under the workflow row's
-- lock (the lock order stays: wake_lock, the workflow row, then signals rows).
--
-- Runs with `search_path` set to the backend's schema only, so every name below lands there.
-- Never edit this file once released: add a new migration instead.

ALTER TABLE workflows ADD COLUMN signal_pending BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE workflows w SET signal_pending = TRUE
WHERE EXISTS (SELECT 1 FROM signals s WHERE s.instance_id = w.instance_id);

DROP INDEX workflows_ready;
DROP INDEX workflows_ready_failed;
DROP INDEX workflows_parked;
DROP INDEX workflows_woken;

CREATE INDEX workflows_ready ON workflows (priority, updated_at, instance_id)
    WHERE status = 'InProgress' AND position_kind = 'AtTask' AND NOT current_done AND has_input
      AND NOT signal_pending;

CREATE INDEX workflows_ready_failed ON workflows (failed_worker, priority, updated_at)
    WHERE status = 'InProgress' AND position_kind = 'AtTask' AND NOT current_done AND has_input
      AND failed_worker IS NOT NULL AND NOT signal_pending;

CREATE INDEX workflows_parked ON workflows (wake_at)
    WHERE status = 'InProgress' AND position_kind IN ('AtDelay', 'AtSignal') AND wake_at IS NOT NULL
      AND NOT signal_pending;

CREATE INDEX workflows_woken ON workflows (updated_at, instance_id)
    WHERE woken AND status = 'InProgress' AND position_kind = 'AtSignal' AND NOT signal_pending;
