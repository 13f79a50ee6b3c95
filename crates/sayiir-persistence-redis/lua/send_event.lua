-- Appends an event to the queue (instance, name) and wakes the workflow if it waits for it.
-- ARGV: 1 now, 2 instance, 3 name, 4 payload. Returns 'ok'.

local name = ARGV[3]
local tail = redis.call('HINCRBY', K_EV, ev_tail_field(name), 1)
redis.call('HSET', K_EV, ev_msg_field(fmt(tail), name), ARGV[4])
redis.call('HSETNX', K_EV, ev_head_field(name), fmt(tail))
if redis.call('HGET', K_SNAP, 'sig') == name then
  refresh()
end
return 'ok'
