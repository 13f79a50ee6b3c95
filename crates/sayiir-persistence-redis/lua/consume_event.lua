-- Removes and returns the oldest event of the queue (instance, name), exactly once per
-- request: the event taken is kept as the queue's receipt (field "r\0<name>": the request id,
-- a NUL, the payload) until the next request on the queue, so that a request asked again
-- after a timeout or a lost connection gets the event its first attempt took instead of
-- taking another one (or losing the first).
-- ARGV: 1 now, 2 instance, 3 name, 4 request id (no NUL). Returns {payload} or {} when the
-- queue is empty.

local name, request = ARGV[3], ARGV[4]
local receipt_field = 'r\0' .. name
local receipt = redis.call('HGET', K_EV, receipt_field)
if receipt then
  local cut = string.find(receipt, '\0', 1, true)
  if cut and string.sub(receipt, 1, cut - 1) == request then
    return {string.sub(receipt, cut + 1)}
  end
end
local payload = ev_pop(name)
if payload == nil then
  return {}
end
redis.call('HSET', K_EV, receipt_field, request .. '\0' .. payload)
if redis.call('HGET', K_SNAP, 'sig') == name then
  refresh()
end
return {payload}
