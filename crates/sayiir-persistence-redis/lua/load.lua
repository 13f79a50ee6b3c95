-- Reads a snapshot without its results in one atomic step; load_snapshot sends it in one
-- MULTI with an HGETALL of the results.
-- Returns packed_snapshot().

return packed_snapshot()
