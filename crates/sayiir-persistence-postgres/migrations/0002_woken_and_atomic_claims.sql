-- Signal waits woken by an event, found without reading the events table; claims whose § No claim
-- on finished work refusal is checked under the workflow row's lock.
--
-- Runs with `search_path` set to the backend's schema only, so every name below lands there.
-- Never edit this file once released: add a new migration instead.

-- `woken`: the workflow waits at a signal (in progress, `AtSignal`) and an event may be queued
-- for its signal name. Never false while an event is queued for a waiting workflow; it may be
-- true with no event left (a consumer took it), which find_available_tasks and
-- consume_event clear. Every writer that can make it true or false takes `wake_lock` first,
-- then reads the events table in a statement that starts after the lock, so a concurrent
-- `send_event` is either seen or comes after and sets the flag itself.
ALTER TABLE workflows ADD COLUMN woken BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE workflows w SET woken = TRUE
WHERE w.status = 'InProgress' AND w.position_kind = 'AtSignal' AND w.signal_name IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.instance_id = w.instance_id AND e.signal_name = w.signal_name);

-- Woken signal waits, oldest first: find_available_tasks reads O(woken) entries.
CREATE INDEX workflows_woken ON workflows (updated_at, instance_id)
    WHERE woken AND status = 'InProgress' AND position_kind = 'AtSignal';

-- The per-instance lock that orders `send_event` against the writers of `woken`. A transaction
-- lock: released at commit or rollback. Taken before any row lock (one lock order).
CREATE FUNCTION wake_lock(p_instance_id TEXT) RETURNS VOID
LANGUAGE sql
AS $$ SELECT pg_advisory_xact_lock(hashtextextended('sayiir-wake:' || p_instance_id, 0)) $$;

-- The non-blocking variant, for callers that already hold other locks.
CREATE FUNCTION try_wake_lock(p_instance_id TEXT) RETURNS BOOLEAN
LANGUAGE sql
AS $$ SELECT pg_try_advisory_xact_lock(hashtextextended('sayiir-wake:' || p_instance_id, 0)) $$;

-- Queues an event and wakes the workflow waiting for it, if any.
CREATE FUNCTION send_event(p_instance_id TEXT, p_signal_name TEXT, p_payload BYTEA)
RETURNS VOID
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM wake_lock(p_instance_id);
    INSERT INTO events (instance_id, signal_name, payload)
    VALUES (p_instance_id, p_signal_name, p_payload);
    -- A statement of its own, so it sees a workflow row committed while we waited for the lock.
    UPDATE workflows SET woken = TRUE
    WHERE instance_id = p_instance_id AND signal_name = p_signal_name AND NOT woken
      AND status = 'InProgress' AND position_kind = 'AtSignal';
END
$$;

-- Clears `woken` if no event is queued for the signal the workflow waits for. Never waits:
-- when the lock or the row is busy, the flag stays set (a harmless false positive).
CREATE FUNCTION settle_woken(p_instance_id TEXT) RETURNS VOID
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM workflows WHERE instance_id = p_instance_id AND woken)
       AND try_wake_lock(p_instance_id) THEN
        UPDATE workflows w SET woken = FALSE
        WHERE w.instance_id IN (SELECT l.instance_id FROM workflows l
                                WHERE l.instance_id = p_instance_id AND l.woken
                                FOR UPDATE SKIP LOCKED)
          AND NOT EXISTS (SELECT 1 FROM events e
                          WHERE e.instance_id = w.instance_id AND e.signal_name = w.signal_name);
    END IF;
END
$$;

-- Removes and returns the oldest event of a queue (NULL: none), then settles `woken`.
-- `SKIP LOCKED`: a concurrent consumer holding the oldest row makes this one take the next
-- (or none), never the same event.
CREATE FUNCTION consume_event(p_instance_id TEXT, p_signal_name TEXT) RETURNS BYTEA
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_payload BYTEA;
BEGIN
    DELETE FROM events WHERE id = (
        SELECT id FROM events
        WHERE instance_id = p_instance_id AND signal_name = p_signal_name
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) RETURNING payload INTO v_payload;
    IF FOUND THEN
        PERFORM settle_woken(p_instance_id);
    END IF;
    RETURN v_payload;
END
$$;

-- save_snapshot of 0001, now also computing `woken`: a save that parks the workflow at a
-- signal wait takes `wake_lock` first, and the upsert (a later statement, hence a later
-- snapshot) sees every event sent before.
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
        retry_not_before, failed_worker, wake_at, signal_name, woken
    ) VALUES (
        p_instance_id, p_status, p_blob, p_trace_parent, p_updated_at, p_last_completed_task_id,
        p_position_kind, p_current_task_id, p_current_done, p_has_input, p_priority, p_tags,
        p_retry_not_before, p_failed_worker, p_wake_at, p_signal_name,
        CASE WHEN p_signal_name IS NULL THEN FALSE
             ELSE EXISTS (SELECT 1 FROM events e
                          WHERE e.instance_id = p_instance_id AND e.signal_name = p_signal_name)
        END
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

-- claim_task (§ No claim on finished work) as one atomic step: the workflow row is share-locked
-- first (every write of a workflow's status or results locks that row exclusively), and the refusal
-- is read by a later statement, so it sees every result committed before the lock and none can be
-- committed before this claim is. `p_refused`: statuses that refuse every claim;
-- `p_refused_if_done`: statuses that refuse a task whose result is stored. An expiry outside
-- `p_min_ms..=p_max_ms` (the range of `DateTime<Utc>`) means "never expires".
CREATE FUNCTION claim_task(
    p_instance_id      TEXT,
    p_task_id          TEXT,
    p_worker_id        TEXT,
    p_ttl_ms           BIGINT,
    p_min_ms           BIGINT,
    p_max_ms           BIGINT,
    p_refused          TEXT[],
    p_refused_if_done  TEXT[]
) RETURNS TABLE (out_claimed_ms BIGINT, out_expires_ms BIGINT)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_status TEXT;
    v_now    BIGINT;
BEGIN
    SELECT w.status INTO v_status FROM workflows w
    WHERE w.instance_id = p_instance_id FOR SHARE;
    IF FOUND AND (v_status = ANY (p_refused)
                  OR (v_status = ANY (p_refused_if_done)
                      AND EXISTS (SELECT 1 FROM task_results r
                                  WHERE r.instance_id = p_instance_id
                                    AND r.task_id = p_task_id))) THEN
        RETURN;
    END IF;
    -- The clock after any wait for the lock.
    v_now := floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
    INSERT INTO claims AS c (instance_id, task_id, worker_id, claimed_ms, expires_ms)
    VALUES (p_instance_id, p_task_id, p_worker_id, v_now,
        CASE WHEN p_ttl_ms IS NULL THEN NULL
             WHEN v_now::numeric + p_ttl_ms NOT BETWEEN p_min_ms AND p_max_ms THEN NULL
             ELSE v_now + p_ttl_ms END)
    ON CONFLICT (instance_id, task_id) DO UPDATE SET
        worker_id = EXCLUDED.worker_id,
        claimed_ms = EXCLUDED.claimed_ms,
        expires_ms = EXCLUDED.expires_ms
    WHERE c.expires_ms IS NOT NULL AND c.expires_ms <= EXCLUDED.claimed_ms
    RETURNING c.claimed_ms, c.expires_ms INTO out_claimed_ms, out_expires_ms;
    IF FOUND THEN
        RETURN NEXT;
    END IF;
END
$$;
