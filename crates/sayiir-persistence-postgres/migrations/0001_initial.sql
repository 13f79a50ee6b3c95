-- Initial schema of sayiir-persistence-postgres.
--
-- Runs with `search_path` set to the backend's schema only, so every name below lands there.
-- Never edit this file once released: add a new migration instead.

-- One row per workflow instance. `blob` is the shared codec's encoding of the snapshot with
-- its completed task results left out (they live in `task_results`); the other columns are
-- what the hot paths read without decoding. `updated_at` and `last_completed_task_id` are
-- authoritative over the blob for in-progress workflows, because `save_task_result` updates
-- only them and one result row.
CREATE TABLE workflows (
    instance_id            TEXT COLLATE "C" PRIMARY KEY,
    status                 TEXT     NOT NULL,
    blob                   BYTEA    NOT NULL,
    trace_parent           TEXT,
    updated_at             BIGINT   NOT NULL,
    last_completed_task_id TEXT COLLATE "C",
    position_kind          TEXT,
    current_task_id        TEXT COLLATE "C",
    current_done           BOOLEAN  NOT NULL,
    has_input              BOOLEAN  NOT NULL,
    priority               SMALLINT NOT NULL,
    tags                   TEXT[]   NOT NULL,
    retry_not_before       BIGINT,
    failed_worker          TEXT COLLATE "C",
    wake_at                BIGINT,
    signal_name            TEXT COLLATE "C",
    revision               BIGINT   NOT NULL DEFAULT 0
);

-- Ready tasks, in the order of one priority level: find_available_tasks reads the first rows
-- of each level it needs, never the whole set.
CREATE INDEX workflows_ready ON workflows (priority, updated_at, instance_id)
    WHERE status = 'InProgress' AND position_kind = 'AtTask' AND NOT current_done AND has_input;

-- Ready tasks that last failed on a given worker: they sort after all others for that worker.
CREATE INDEX workflows_ready_failed ON workflows (failed_worker, priority, updated_at)
    WHERE status = 'InProgress' AND position_kind = 'AtTask' AND NOT current_done AND has_input
      AND failed_worker IS NOT NULL;

-- Parked workflows with a wake-up time: due ones are found in O(due).
CREATE INDEX workflows_parked ON workflows (wake_at)
    WHERE status = 'InProgress' AND position_kind IN ('AtDelay', 'AtSignal') AND wake_at IS NOT NULL;

-- Completed task results of workflows that hold them (in progress, paused, cancelled); for a
-- completed or failed workflow, the results it held before (the archive).
CREATE TABLE task_results (
    instance_id TEXT COLLATE "C" NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    output      BYTEA NOT NULL,
    PRIMARY KEY (instance_id, task_id)
);

-- Pending cancel and pause requests; `requested_at` kept to the nanosecond.
CREATE TABLE signals (
    instance_id     TEXT COLLATE "C" NOT NULL,
    kind            TEXT    NOT NULL,
    reason          TEXT,
    requested_by    TEXT,
    requested_secs  BIGINT  NOT NULL,
    requested_nanos INTEGER NOT NULL,
    PRIMARY KEY (instance_id, kind)
);

-- Task leases, in milliseconds of the database clock; a NULL expiry never expires.
CREATE TABLE claims (
    instance_id TEXT COLLATE "C" NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    worker_id   TEXT   NOT NULL,
    claimed_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    PRIMARY KEY (instance_id, task_id)
);
CREATE INDEX claims_expiry ON claims (expires_ms) WHERE expires_ms IS NOT NULL;

-- External events, one FIFO queue per (instance, signal name).
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    instance_id TEXT COLLATE "C" NOT NULL,
    signal_name TEXT COLLATE "C" NOT NULL,
    payload     BYTEA NOT NULL
);
CREATE INDEX events_queue ON events (instance_id, signal_name, id);

-- Large values: lz4 where the server has it (PostgreSQL's default pglz made a 36 KB upsert about
-- three times slower), otherwise stored out of line without compression.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE workflows ALTER COLUMN blob SET COMPRESSION lz4;
        ALTER TABLE task_results ALTER COLUMN output SET COMPRESSION lz4;
        ALTER TABLE events ALTER COLUMN payload SET COMPRESSION lz4;
    ELSE
        ALTER TABLE workflows ALTER COLUMN blob SET STORAGE EXTERNAL;
        ALTER TABLE task_results ALTER COLUMN output SET STORAGE EXTERNAL;
        ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL;
    END IF;
END
$$;

-- save_snapshot in one statement that is also correct under concurrent saves of one instance:
-- the upsert locks the workflow row first, and each later statement of a function takes a
-- fresh snapshot, so the result rows replaced are the ones the previous writer committed.
-- (A single statement with data-modifying CTEs would keep its start-of-statement snapshot and
-- could leave a concurrent writer's result rows behind.)
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
    p_outputs                BYTEA[]
) RETURNS VOID
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO workflows AS w (
        instance_id, status, blob, trace_parent, updated_at, last_completed_task_id,
        position_kind, current_task_id, current_done, has_input, priority, tags,
        retry_not_before, failed_worker, wake_at, signal_name
    ) VALUES (
        p_instance_id, p_status, p_blob, p_trace_parent, p_updated_at, p_last_completed_task_id,
        p_position_kind, p_current_task_id, p_current_done, p_has_input, p_priority, p_tags,
        p_retry_not_before, p_failed_worker, p_wake_at, p_signal_name
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
