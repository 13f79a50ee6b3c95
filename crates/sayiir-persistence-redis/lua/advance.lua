-- Advances a workflow parked at a due delay or signal wait (§ Advancing parked workflows) in one
-- step, on the fields save.lua stored for it: `nxt` the next task (absent: the park is the last
-- node, the workflow completes), `pid` the park node, `anb` and `amt` the retry
-- not-before and meta entry of the next task. A signal's payload (the head event, or empty
-- on timeout) becomes the result of its node and the head event is popped. The blob stays
-- as it is: the transition record (`xv`, `xe`) lets a read replay
-- schedule::advance_parked (see src/transition.rs). A workflow that is not due after all
-- (a pending request, an event consumed by someone else, a backoff that ended) only has
-- its index entries recomputed, so concurrent finders advance a park once.
-- ARGV: 1 now, 2 instance, 3 now in Unix seconds.
-- Returns 'advanced' or 'refreshed'.

local f = redis.call('HMGET', K_SNAP, 'st', 'pk', 'wake', 'sig', 'pid', 'nxt', 'anb', 'amt')
local st, pk, wake, sig, pid, nxt, anb, amt = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
local due = wake and tonumber(wake) <= APP_NOW
if st ~= 'InProgress' or redis.call('HLEN', K_SIG) > 0 then
  refresh()
  return 'refreshed'
end
local record = {'xt', '1', 'xv', ARGV[1], 'upd', ARGV[3]}
if pk == 'AtSignal' and sig and pid then
  local payload = ev_pop(sig)
  if payload then
    record[#record + 1] = 'xe'
    record[#record + 1] = '1'
  elseif due then
    payload = ''
  else
    refresh()
    return 'refreshed'
  end
  redis.call('HSET', K_RES, pid, payload)
  redis.call('HSET', K_SNAP, 'last', pid)
elseif not (pk == 'AtDelay' and due) then
  refresh()
  return 'refreshed'
end
redis.call('HSET', K_SNAP, unpack(record))
-- `pid` stays: a read of a workflow completed here replays with its output.
redis.call('HDEL', K_SNAP, 'wake', 'sig', 'nxt', 'anb', 'amt', 'nb')
if nxt then
  redis.call('HSET', K_SNAP, 'pk', 'AtTask', 'cur', nxt)
  if anb then
    redis.call('HSET', K_SNAP, 'nb', anb)
  end
  if amt then
    redis.call('HSET', K_META, INSTANCE, amt)
  else
    redis.call('HDEL', K_META, INSTANCE)
  end
else
  redis.call('HSET', K_SNAP, 'st', 'Completed')
  archive_results()
  redis.call('HDEL', K_SNAP, 'pk', 'cur')
  redis.call('HDEL', K_META, INSTANCE)
end
refresh()
relist()
return 'advanced'
