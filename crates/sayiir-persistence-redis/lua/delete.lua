-- Deletes a workflow and everything stored for it (§ Delete removes everything).
-- Returns 'ok' or 'not_found'.

-- A staging hash can only outlive its save when the save's connection broke between a
-- NOSCRIPT and the resend: removed here too, even for a workflow that is not stored.
redis.call('DEL', K_STAGE)
if redis.call('EXISTS', K_SNAP) == 0 then
  return 'not_found'
end
local tasks = redis.call('HKEYS', K_CLM)
for i = 1, #tasks do
  redis.call('ZREM', K_CEXP, claim_member(tasks[i]))
end
redis.call('DEL', K_SNAP, K_BLOB, K_RES, K_SIG, K_CLM, K_EV, K_ARCH, K_STAGE)
redis.call('ZREM', K_READY, INSTANCE)
redis.call('ZREM', K_PARKED, INSTANCE)
redis.call('HDEL', K_META, INSTANCE)
redis.call('SREM', K_INST, INSTANCE)
return 'ok'
