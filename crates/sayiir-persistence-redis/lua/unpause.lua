-- Resumes a paused workflow (unpause, § unpause) in one step: the status returns to
-- InProgress (the transition record says so, see src/transition.rs), a pending Pause
-- request is dropped (§ Unpause drops a pending pause), and the index entries follow.
-- ARGV: 1 now, 2 instance, 3 now in Unix seconds.
-- Returns {'ok', packed_snapshot(), the results as flat task/output pairs}, {'not_found'}
-- or {'not_paused', status}.

local st = redis.call('HGET', K_SNAP, 'st')
if not st then
  return {'not_found'}
end
if st ~= 'Paused' then
  return {'not_paused', st}
end
redis.call('HDEL', K_SIG, 'Pause')
redis.call('HSET', K_SNAP, 'st', 'InProgress', 'upd', ARGV[3], 'xt', '1')
refresh()
relist()
return {'ok', packed_snapshot(), redis.call('HGETALL', K_RES)}
