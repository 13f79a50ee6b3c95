-- Schema version 4: the indexes of `WorkflowListing` and `RetentionStore`. A listing page and
-- a prune batch read, per status (and definition), the rows nearest one end of `updated_at`,
-- never the whole table.

CREATE INDEX workflows_by_status ON workflows (status, updated_at, instance_id);
CREATE INDEX workflows_by_definition
    ON workflows (status, definition_hash, updated_at, instance_id);
