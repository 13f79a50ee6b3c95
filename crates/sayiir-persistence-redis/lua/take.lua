-- Reads a ready task for find_available_tasks, if it is still ready.
-- ARGV: 1 now, 2 instance.
-- Returns false, or packed: task, blob, trace_parent|false, input|false, revision, where a
-- false input means "the initial input" (no task has completed yet).

if not redis.call('ZSCORE', K_READY, INSTANCE) then
  return false
end
local f = redis.call('HMGET', K_SNAP, 'cur', 'tp', 'last', 'rev')
local blob = redis.call('GET', K_BLOB)
if not f[1] or not blob then
  return false
end
local input = false
if redis.call('HLEN', K_RES) > 0 then
  input = redis.call('HGET', K_RES, f[3] or '')
  if not input then
    return false
  end
end
return cmsgpack.pack(f[1], blob, f[2], input, f[4])
