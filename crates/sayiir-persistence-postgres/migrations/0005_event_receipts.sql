-- consume_event takes effect once per request: the event a request took is kept as its
-- queue's receipt (one per queue, replaced by the next request that takes one), so that the
-- same request sent again after a timeout or a lost connection gets that event back instead
-- of taking the next one while the first is lost.
--
-- Runs with `search_path` set to the backend's schema only.
-- Never edit this file once released: add a new migration instead.

CREATE TABLE event_receipts (
    instance_id TEXT COLLATE "C" NOT NULL,
    signal_name TEXT COLLATE "C" NOT NULL,
    request_id  TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    PRIMARY KEY (instance_id, signal_name)
);

CREATE FUNCTION consume_event_once(p_instance_id TEXT, p_signal_name TEXT, p_request_id TEXT)
RETURNS BYTEA
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_payload BYTEA;
BEGIN
    SELECT payload INTO v_payload FROM event_receipts
    WHERE instance_id = p_instance_id AND signal_name = p_signal_name
      AND request_id = p_request_id;
    IF FOUND THEN
        RETURN v_payload;
    END IF;
    v_payload := consume_event(p_instance_id, p_signal_name);
    IF v_payload IS NOT NULL THEN
        INSERT INTO event_receipts AS r (instance_id, signal_name, request_id, payload)
        VALUES (p_instance_id, p_signal_name, p_request_id, v_payload)
        ON CONFLICT (instance_id, signal_name)
        DO UPDATE SET request_id = EXCLUDED.request_id, payload = EXCLUDED.payload;
    END IF;
    RETURN v_payload;
END
$$;
