-- Reads a snapshot in one atomic step.
-- Returns stored_snapshot().

return stored_snapshot()
