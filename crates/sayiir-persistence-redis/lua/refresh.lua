-- Recomputes the index entries of one workflow (a backoff that ended, a park that is not
-- due after all, a snapshot that is gone). ARGV: 1 now, 2 instance. Returns 'ok'.

refresh()
return 'ok'
