-- Schema version 7: recorded once every row has its `definition_hash` (migration 6). The
-- library applies it only after its backfill of the rows stored before version 6 finished, so
-- a schema at version 7 is complete; one at version 6 (a backfill cut off by a stopped process
-- or by `call_timeout`) is finished by the next connect.
--
-- It also brings back the 19-argument `save_snapshot` of versions 2 to 5, for processes still
-- running an older version during a rolling upgrade: their saves store no definition hash
-- (NULL; listed with an empty one) until the workflow is saved again by a newer process or
-- `migrate()` runs (it always finishes the backfill).
--
-- Runs with `search_path` set to the backend's schema only.
-- Never edit this file once released: add a new migration instead.

CREATE OR REPLACE FUNCTION save_snapshot(
    p_instance_id            TEXT,
    p_status                 TEXT,
    p_blob                   BYTEA,
    p_trace_parent           TEXT,
    p_updated_at             BIGINT,
    p_last_completed_task_id TEXT,
    p_position_kind          TEXT,
    p_current_task_id        TEXT,
    p_current_done           BOOLEAN,
    p_has_input              BOOLEAN,
    p_priority               SMALLINT,
    p_tags                   TEXT[],
    p_retry_not_before       BIGINT,
    p_failed_worker          TEXT,
    p_wake_at                BIGINT,
    p_signal_name            TEXT,
    p_holds_results          BOOLEAN,
    p_task_ids               TEXT[],
    p_outputs                BYTEA[]
) RETURNS VOID
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT save_snapshot(
        p_instance_id, p_status, p_blob, p_trace_parent, p_updated_at, p_last_completed_task_id,
        p_position_kind, p_current_task_id, p_current_done, p_has_input, p_priority, p_tags,
        p_retry_not_before, p_failed_worker, p_wake_at, p_signal_name, p_holds_results,
        p_task_ids, p_outputs, NULL::text
    );
$$;
