-- Schema version 6: what `WorkflowListing` and `RetentionStore` read.
--
-- `definition_hash` is kept beside the blob, written by `save_snapshot` (the only writer that
-- can change it). Rows stored before this migration get it from their blob, decoded by the
-- library right after this migration runs (`migrate::backfill_definitions`); until then
-- it is NULL.
--
-- A listing page and a prune batch read, per status (and definition), the rows nearest one
-- end of `updated_at`: never the whole table.
--
-- Runs with `search_path` set to the backend's schema only.
-- Never edit this file once released: add a new migration instead.

ALTER TABLE workflows ADD COLUMN definition_hash TEXT COLLATE "C";

CREATE INDEX workflows_by_status ON workflows (status, updated_at, instance_id);
CREATE INDEX workflows_by_definition ON workflows (status, definition_hash, updated_at, instance_id);
-- Rows whose definition is not known yet: the backfill finds them in O(their number).
CREATE INDEX workflows_definition_unknown ON workflows (instance_id) WHERE definition_hash IS NULL;

-- save_snapshot of 0002, now also writing `definition_hash` (`p_definition_hash`, last).
DROP FUNCTION save_snapshot(
    TEXT, TEXT, BYTEA, TEXT, BIGINT, TEXT, TEXT, TEXT, BOOLEAN, BOOLEAN, SMALLINT, TEXT[], BIGINT,
    TEXT, BIGINT, TEXT, BOOLEAN, TEXT[], BYTEA[]
);

CREATE FUNCTION save_snapshot(
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
    p_outputs                BYTEA[],
    p_definition_hash        TEXT
) RETURNS VOID
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_signal_name IS NOT NULL THEN
        PERFORM wake_lock(p_instance_id);
    END IF;

    INSERT INTO workflows AS w (
        instance_id, status, blob, trace_parent, updated_at, last_completed_task_id,
        position_kind, current_task_id, current_done, has_input, priority, tags,
        retry_not_before, failed_worker, wake_at, signal_name, woken, definition_hash
    ) VALUES (
        p_instance_id, p_status, p_blob, p_trace_parent, p_updated_at, p_last_completed_task_id,
        p_position_kind, p_current_task_id, p_current_done, p_has_input, p_priority, p_tags,
        p_retry_not_before, p_failed_worker, p_wake_at, p_signal_name,
        CASE WHEN p_signal_name IS NULL THEN FALSE
             ELSE EXISTS (SELECT 1 FROM events e
                          WHERE e.instance_id = p_instance_id AND e.signal_name = p_signal_name)
        END,
        p_definition_hash
    )
    ON CONFLICT (instance_id) DO UPDATE SET
        status = EXCLUDED.status,
        blob = EXCLUDED.blob,
        trace_parent = EXCLUDED.trace_parent,
        updated_at = EXCLUDED.updated_at,
        last_completed_task_id = EXCLUDED.last_completed_task_id,
        position_kind = EXCLUDED.position_kind,
        current_task_id = EXCLUDED.current_task_id,
        current_done = EXCLUDED.current_done,
        has_input = EXCLUDED.has_input,
        priority = EXCLUDED.priority,
        tags = EXCLUDED.tags,
        retry_not_before = EXCLUDED.retry_not_before,
        failed_worker = EXCLUDED.failed_worker,
        wake_at = EXCLUDED.wake_at,
        signal_name = EXCLUDED.signal_name,
        woken = EXCLUDED.woken,
        definition_hash = EXCLUDED.definition_hash,
        revision = w.revision + 1;

    -- Completed and Failed states hold no results: the rows stay as their archive.
    IF p_holds_results THEN
        DELETE FROM task_results
        WHERE instance_id = p_instance_id AND task_id <> ALL (p_task_ids);

        -- Unchanged outputs are not rewritten: the runtime resends every result on each save.
        INSERT INTO task_results AS r (instance_id, task_id, output)
        SELECT p_instance_id, t.task_id, t.output
        FROM unnest(p_task_ids, p_outputs) AS t (task_id, output)
        ON CONFLICT (instance_id, task_id) DO UPDATE SET output = EXCLUDED.output
        WHERE r.output IS DISTINCT FROM EXCLUDED.output;
    END IF;
END
$$;
