-- Pushes a claim's expiry back by a duration counted from its previous expiry (0.4
-- semantics, § extend_task_claim); the owner check and the update are one step.
-- ARGV: 1 now, 2 instance, 3 task, 4 worker, 5 additional ms.
-- Returns {'not_found'}, {'other', owner} or {'ok'}.

local task = ARGV[3]
local value = redis.call('HGET', K_CLM, task)
if not value then
  return {'not_found'}
end
local claimed, expires, owner = parse_claim(value)
if owner ~= ARGV[4] then
  return {'other', owner}
end
if expires == nil then
  return {'ok'}
end
local member = claim_member(task)
local extended = expires + tonumber(ARGV[5])
if extended >= 9007199254740992 then
  redis.call('HSET', K_CLM, task, fmt(claimed) .. ' - ' .. owner)
  redis.call('ZADD', K_CEXP, '+inf', member)
else
  redis.call('HSET', K_CLM, task, fmt(claimed) .. ' ' .. fmt(extended) .. ' ' .. owner)
  redis.call('ZADD', K_CEXP, fmt(extended), member)
end
if redis.call('HGET', K_SNAP, 'cur') == task then
  refresh()
end
return {'ok'}
