-- Reads one task output: from the current results, or from the archive once terminal
-- (the results hash is kept as the archive, contract D5).
-- ARGV: 1 now, 2 instance, 3 task. Returns {'not_found'} or {'ok', output|false}.

if redis.call('EXISTS', K_SNAP) == 0 then
  return {'not_found'}
end
return {'ok', redis.call('HGET', K_RES, ARGV[3])}
