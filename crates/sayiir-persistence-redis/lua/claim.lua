-- Claims a task (§ claim_task and § No claim on finished work) with the server clock.
-- ARGV: 1 now, 2 instance, 3 task, 4 worker, 5 TTL in ms ('' = never expires).
-- Returns {'refused'} or {'claimed', claimed_ms, expires_ms|false}.

local task = ARGV[3]
local st = redis.call('HGET', K_SNAP, 'st')
-- § No claim on finished work, in the same step as the claim: this mirrors
-- claims::claim_refused(status, has_result) of the core crate (a terminal workflow, or a task whose
-- result the state holds); the test claim_refusal_mirrors_the_core_rule checks it status by status.
if st == 'Completed' or st == 'Failed' or st == 'Cancelled' then
  return {'refused'}
end
if st and holds_results(st) and redis.call('HEXISTS', K_RES, task) == 1 then
  return {'refused'}
end
local now = server_ms()
if claim_live(task, now) then
  return {'refused'}
end
local expires = false
if ARGV[5] ~= '' then
  expires = now + tonumber(ARGV[5])
  -- Past 2^53 a double is no longer exact: such a lease never expires in practice.
  if expires >= 9007199254740992 then
    expires = false
  end
end
local member = claim_member(task)
if expires then
  redis.call('HSET', K_CLM, task, fmt(now) .. ' ' .. fmt(expires) .. ' ' .. ARGV[4])
  redis.call('ZADD', K_CEXP, fmt(expires), member)
else
  redis.call('HSET', K_CLM, task, fmt(now) .. ' - ' .. ARGV[4])
  -- At +inf: never purged, and counted as live by counts.lua.
  redis.call('ZADD', K_CEXP, '+inf', member)
end
if st and redis.call('HGET', K_SNAP, 'cur') == task then
  refresh()
end
if expires then
  return {'claimed', now, expires}
end
return {'claimed', now, false}
