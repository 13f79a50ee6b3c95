-- Stores a whole snapshot with its index entries. The snap hash is rewritten, which also
-- drops the transition record of the previous blob. The results are not arguments: moving
-- values into Lua costs about 1.7 us of server time per KiB, so save_snapshot writes them
-- natively into the staging hash in the same MULTI, just before this script.
-- ARGV: 1 now, 2 instance,
--   3 results mode: 'staged' (a state that holds results: they are in the staging hash,
--     which becomes the results hash, and there is no archive), 'none' (a state that holds
--     no result yet: no results, no archive) or 'archive' (Completed, Failed: the stored
--     results move to the archive, § Results survive completion),
--   4 meta entry ('' = none),
--   5 the blob,
--   6 n = number of snapshot hash fields, then n field/value pairs.
-- Returns 'ok'.

local mode = ARGV[3]
-- Checked before any write: a script is not rolled back when it fails halfway.
if mode == 'staged' and redis.call('EXISTS', K_STAGE) == 0 then
  return redis.error_reply('save: the staged results are missing')
end
local n = tonumber(ARGV[6])
redis.call('SET', K_BLOB, ARGV[5])
redis.call('DEL', K_SNAP)
redis.call('HSET', K_SNAP, 'rev', redis.call('INCR', K_SEQ), unpack(ARGV, 7, 6 + 2 * n))

if mode == 'staged' then
  redis.call('DEL', K_ARCH)
  redis.call('RENAME', K_STAGE, K_RES)
elseif mode == 'none' then
  redis.call('DEL', K_RES, K_ARCH, K_STAGE)
else
  redis.call('DEL', K_STAGE)
  archive_results()
end

if ARGV[4] ~= '' then
  redis.call('HSET', K_META, INSTANCE, ARGV[4])
else
  redis.call('HDEL', K_META, INSTANCE)
end
redis.call('SADD', K_INST, INSTANCE)
refresh()
relist()
return 'ok'
