-- Reads a snapshot in one atomic step.
-- Returns false when absent, else {blob, trace_parent|false, last|false, updated_at,
-- status, revision, results...} where results are flat task/output pairs, sent only for
-- the states that hold results (InProgress, Paused, Cancelled).

local f = redis.call('HMGET', K_SNAP, 'tp', 'last', 'upd', 'st', 'rev')
if not f[4] then
  return false
end
local out = {redis.call('GET', K_BLOB) or '', f[1], f[2], f[3], f[4], f[5]}
if f[4] == 'InProgress' or f[4] == 'Paused' or f[4] == 'Cancelled' then
  local results = redis.call('HGETALL', K_RES)
  for i = 1, #results do
    out[6 + i] = results[i]
  end
end
return out
