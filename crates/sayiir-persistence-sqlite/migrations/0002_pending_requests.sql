-- Schema version 2: a workflow with a pending cancel or pause leaves the scheduling indexes.
-- find_available_tasks neither returns nor advances such a workflow (§ Advancing parked workflows,
-- § Eligibility rules), and the request can stay pending for good (§ Requests for unclaimed
-- workflows are never applied): kept in the indexes, every poll would skip it again. The signal
-- statements keep `signal_pending` up to date.

ALTER TABLE workflows ADD COLUMN signal_pending INTEGER NOT NULL DEFAULT 0;
UPDATE workflows SET signal_pending = 1
WHERE instance_id IN (SELECT instance_id FROM signals);

DROP INDEX workflows_ready;
DROP INDEX workflows_wake;
DROP INDEX workflows_woken;
CREATE INDEX workflows_ready ON workflows (ready_priority, updated_at, instance_id)
    WHERE ready_priority IS NOT NULL AND signal_pending = 0;
CREATE INDEX workflows_wake ON workflows (wake_ms)
    WHERE wake_ms IS NOT NULL AND signal_pending = 0;
CREATE INDEX workflows_woken ON workflows (instance_id) WHERE woken = 1 AND signal_pending = 0;
