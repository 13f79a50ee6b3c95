-- Validates a cancel or pause request against the stored status and records it, in one
-- atomic step (contract 4.1 and D2; validation::signal_decision re-expressed).
-- ARGV: 1 now, 2 instance, 3 kind ('Cancel' | 'Pause'), 4 encoded request.
-- Returns {'not_found'}, {'cannot_cancel', status}, {'cannot_pause', status},
-- {'already'} (nothing stored) or {'stored'}.

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return {'not_found'}
end
local kind = ARGV[3]
if kind == 'Cancel' then
  if st == 'Completed' or st == 'Failed' then
    return {'cannot_cancel', st}
  end
  if st == 'Cancelled' then
    return {'already'}
  end
else
  if st == 'Completed' or st == 'Failed' or st == 'Cancelled' then
    return {'cannot_pause', st}
  end
  if st == 'Paused' then
    return {'already'}
  end
end
redis.call('HSET', K_SIG, kind, ARGV[4])
refresh()
return {'stored'}
