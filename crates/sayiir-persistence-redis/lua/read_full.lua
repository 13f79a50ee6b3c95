-- Reads what a compare-and-set transition needs, in one atomic step.
-- ARGV: 1 now, 2 instance, 3 signal kind to return ('' = none).
-- Returns {signal|false, pending request count, head event of the awaited signal|false,
-- then the reply of load.lua (false when absent)}.

local request = false
if ARGV[3] ~= '' then
  request = redis.call('HGET', K_SIG, ARGV[3])
end
local pending = redis.call('HLEN', K_SIG)
local event = false
local sig = redis.call('HGET', K_SNAP, 'sig')
if sig then
  event = ev_head(sig) or false
end
local f = redis.call('HMGET', K_SNAP, 'tp', 'last', 'upd', 'st', 'rev', 'srev')
if not f[4] then
  return {request, pending, event, false}
end
local out = {request, pending, event,
  redis.call('GET', K_BLOB) or '', f[1], f[2], f[3], f[4], f[5], f[6]}
if holds_results(f[4]) then
  local results = redis.call('HGETALL', K_RES)
  for i = 1, #results do
    out[10 + i] = results[i]
  end
end
return out
