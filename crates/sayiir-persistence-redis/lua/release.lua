-- Releases a claim held by the caller; the owner check and the delete are one step.
-- ARGV: 1 now, 2 instance, 3 task, 4 worker.
-- Returns {'not_found'}, {'other', owner} or {'ok'}.

local task = ARGV[3]
local value = redis.call('HGET', K_CLM, task)
if not value then
  return {'not_found'}
end
local _, _, owner = parse_claim(value)
if owner ~= ARGV[4] then
  return {'other', owner}
end
redis.call('HDEL', K_CLM, task)
redis.call('ZREM', K_CEXP, claim_member(task))
if redis.call('HGET', K_SNAP, 'cur') == task then
  refresh()
end
return {'ok'}
