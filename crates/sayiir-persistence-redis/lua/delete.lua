-- Deletes a workflow and everything stored for it (§ Delete removes everything).
-- Returns 'ok' or 'not_found'.

-- A staging hash can only outlive its save when the save's connection broke between a
-- NOSCRIPT and the resend: removed here too, even for a workflow that is not stored.
redis.call('DEL', K_STAGE)
if redis.call('EXISTS', K_SNAP) == 0 then
  return 'not_found'
end
delete_everything()
return 'ok'
