-- Records one task output (§ save_task_result): mark_task_completed re-expressed on the stored
-- fields, so concurrent branches never lose an update.
-- ARGV: 1 now, 2 instance, 3 task, 4 output, 5 now in Unix seconds.
-- Returns 'ok' or 'not_found'.

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return 'not_found'
end
if st ~= 'InProgress' then
  return 'ok'
end
redis.call('HSET', K_RES, ARGV[3], ARGV[4])
redis.call('HSET', K_SNAP, 'last', ARGV[3], 'upd', ARGV[5])
refresh()
relist()
return 'ok'
