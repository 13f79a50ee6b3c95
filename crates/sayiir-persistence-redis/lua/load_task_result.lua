-- Reads one task output: from the current results, or from the archive once Completed or
-- Failed (contract D5).
-- ARGV: 1 now, 2 instance, 3 task. Returns {'not_found'} or {'ok', output|false}.

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return {'not_found'}
end
local from = K_ARCH
if holds_results(st) then
  from = K_RES
end
return {'ok', redis.call('HGET', from, ARGV[3])}
