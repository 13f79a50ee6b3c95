-- Deletes a claim if it has expired (server clock) and makes its task available again.
-- ARGV: 1 now, 2 instance, 3 task. Returns 'ok'.

local task = ARGV[3]
local member = claim_member(task)
local value = redis.call('HGET', K_CLM, task)
if not value then
  redis.call('ZREM', K_CEXP, member)
  return 'ok'
end
if claim_live(task) then
  return 'ok'
end
redis.call('HDEL', K_CLM, task)
redis.call('ZREM', K_CEXP, member)
if redis.call('HGET', K_SNAP, 'cur') == task then
  refresh()
end
return 'ok'
