-- Applies a pending Cancel or Pause request to an in-progress workflow (check_and_cancel,
-- check_and_pause; § Applying pending requests) in one step: the status changes, the request moves
-- from the signals hash to the snapshot's transition record (replayed on read, see
-- src/transition.rs), and the index entries follow. The blob, the results and the last
-- completed task stay as they are, so results recorded concurrently are never lost.
-- ARGV: 1 now, 2 instance, 3 'Cancel' or 'Pause', 4 now in Unix seconds,
--   5 now in Unix microseconds, 6 the interrupted task ('' for none; task ids are never
--   empty).
-- Returns 'applied'; 'none' when no request of that kind is pending or the workflow is not
-- in progress; 'not_found' when a request is pending for a workflow that is not stored.

local kind = ARGV[3]
local request = redis.call('HGET', K_SIG, kind)
if not request then
  return 'none'
end
local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return 'not_found'
end
if st ~= 'InProgress' then
  return 'none'
end
local target = 'Paused'
if kind == 'Cancel' then
  target = 'Cancelled'
end
redis.call('HDEL', K_SIG, kind)
redis.call('HDEL', K_SNAP, 'xi')
redis.call('HSET', K_SNAP, 'st', target, 'upd', ARGV[4],
  'xt', '1', 'xd', '1', 'xq', request, 'xa', ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', K_SNAP, 'xi', ARGV[6])
end
refresh()
relist()
return 'applied'
