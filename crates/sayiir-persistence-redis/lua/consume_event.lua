-- Removes and returns the oldest event of the queue (instance, name).
-- ARGV: 1 now, 2 instance, 3 name. Returns {payload} or {} when the queue is empty.

local name = ARGV[3]
local payload = ev_pop(name)
if payload == nil then
  return {}
end
if redis.call('HGET', K_SNAP, 'sig') == name then
  refresh()
end
return {payload}
