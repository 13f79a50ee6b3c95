-- Schema version 1 of a Sayiir SQLite database.

-- One row per workflow. `blob` is the shared codec's encoding of the snapshot WITHOUT its
-- completed task results (those are rows of task_results), so recording a result never
-- rewrites it. `updated_at` and `last_completed_task_id` are authoritative here, because
-- save_task_result changes them without touching the blob. The other columns are what
-- find_available_tasks and the signal checks read without decoding anything.
CREATE TABLE workflows (
    instance_id            TEXT    NOT NULL PRIMARY KEY,
    status                 TEXT    NOT NULL,
    blob                   BLOB    NOT NULL,
    trace_parent           TEXT,
    definition_hash        TEXT    NOT NULL,
    updated_at             INTEGER NOT NULL,
    last_completed_task_id TEXT,
    position_kind          TEXT,
    current_task_id        TEXT,
    task_priority          INTEGER NOT NULL,
    task_tags              TEXT    NOT NULL,   -- JSON array
    retry_not_before_ms    INTEGER,
    failed_worker          TEXT,
    -- task_priority while the workflow has a runnable task, else NULL.
    ready_priority         INTEGER,
    -- When a delay or a signal timeout is due, in Unix milliseconds.
    wake_ms                INTEGER,
    -- The event queue a signal wait listens to, and whether it holds an event.
    signal_name            TEXT,
    woken                  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX workflows_ready ON workflows (ready_priority, updated_at, instance_id)
    WHERE ready_priority IS NOT NULL;
CREATE INDEX workflows_wake ON workflows (wake_ms) WHERE wake_ms IS NOT NULL;
CREATE INDEX workflows_woken ON workflows (instance_id) WHERE woken = 1;

-- The completed_tasks of a workflow; kept as the results archive when it completes or fails.
CREATE TABLE task_results (
    instance_id TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    output      BLOB NOT NULL,
    PRIMARY KEY (instance_id, task_id)
);

CREATE TABLE signals (
    instance_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    reason       TEXT,
    requested_by TEXT,
    requested_at TEXT NOT NULL,  -- RFC 3339 with nanoseconds
    PRIMARY KEY (instance_id, kind)
);

CREATE TABLE claims (
    instance_id TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    worker_id   TEXT    NOT NULL,
    claimed_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    PRIMARY KEY (instance_id, task_id)
);

CREATE INDEX claims_expiry ON claims (expires_ms) WHERE expires_ms IS NOT NULL;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    signal_name TEXT NOT NULL,
    payload     BLOB NOT NULL
);

CREATE INDEX events_queue ON events (instance_id, signal_name, seq);
