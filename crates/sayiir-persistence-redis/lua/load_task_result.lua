-- Reads one task output: from the current results, or from the archive once Completed or
-- Failed (§ Results survive completion).
-- ARGV: 1 now, 2 instance, 3 task. Returns {'not_found'}, {'ok', output|false}, or
-- {'corrupt', st} when the stored status is none of the five (where the result lives depends
-- on it: a guess could answer "no result" for one that is stored).

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return {'not_found'}
end
if not (holds_results(st) or st == 'Completed' or st == 'Failed') then
  return {'corrupt', st}
end
local from = K_ARCH
if holds_results(st) then
  from = K_RES
end
return {'ok', redis.call('HGET', from, ARGV[3])}
