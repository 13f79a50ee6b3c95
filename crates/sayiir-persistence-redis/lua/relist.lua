-- Gives a workflow stored before the listing indexes existed its listing entry (the
-- backfill at connect): the definition hash, decoded from the blob by the library, is stored
-- beside the snapshot unless one is there already. For an instance no longer stored, removes
-- its listing entry.
-- ARGV: 1 now, 2 instance, 3 definition hash.
-- Returns 'ok' or 'not_found'.

if redis.call('EXISTS', K_SNAP) == 0 then
  -- A listing entry that outlived its workflow goes.
  unlist()
  return 'not_found'
end
if not redis.call('HGET', K_SNAP, 'def') then
  redis.call('HSET', K_SNAP, 'def', ARGV[3])
end
relist()
return 'ok'
