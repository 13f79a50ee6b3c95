-- Validates a cancel or pause request against the stored status and records it, in one atomic step
-- (§ store_signal and § Repeated pause or cancel stores nothing). The rule itself is not
-- re-expressed here: Rust passes the decision for every status, computed by
-- validation::signal_decision.
-- ARGV: 1 now, 2 instance, 3 kind ('Cancel' | 'Pause'), 4 encoded request,
--   5 the decision for a status not listed, then status/decision pairs; a decision is
--   'store', 'already' (nothing stored) or 'refuse'.
-- Returns {'not_found'}, {'refused', status}, {'already'} or {'stored'}.

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return {'not_found'}
end
local decision = ARGV[5]
for i = 6, #ARGV - 1, 2 do
  if ARGV[i] == st then
    decision = ARGV[i + 1]
    break
  end
end
if decision == 'refuse' then
  return {'refused', st}
end
if decision == 'already' then
  return {'already'}
end
redis.call('HSET', K_SIG, ARGV[3], ARGV[4])
refresh()
return {'stored'}
