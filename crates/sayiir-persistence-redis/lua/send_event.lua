-- Appends an event to the queue (instance, name) and wakes the workflow if it waits for it.
-- ARGV: 1 now, 2 instance, 3 name, 4 payload. Returns 'ok'.

local name = ARGV[3]
ev_push(name, ARGV[4])
if redis.call('HGET', K_SNAP, 'sig') == name then
  refresh()
end
return 'ok'
