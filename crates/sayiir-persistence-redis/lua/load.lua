-- Reads a snapshot in one atomic step.
-- Returns false when absent, else {blob, trace_parent|false, last|false, updated_at,
-- status, revision, state revision|false, results...} where results are flat task/output
-- pairs, sent only for the states that hold results (holds_results).

local f = redis.call('HMGET', K_SNAP, 'tp', 'last', 'upd', 'st', 'rev', 'srev')
if not f[4] then
  return false
end
local out = {redis.call('GET', K_BLOB) or '', f[1], f[2], f[3], f[4], f[5], f[6]}
if holds_results(f[4]) then
  local results = redis.call('HGETALL', K_RES)
  for i = 1, #results do
    out[7 + i] = results[i]
  end
end
return out
