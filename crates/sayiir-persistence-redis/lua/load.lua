-- Reads a snapshot in one atomic step.
-- Returns false when absent, else packed_snapshot().

return packed_snapshot()
