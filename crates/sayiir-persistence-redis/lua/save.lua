-- Stores a whole snapshot with its index entries. The snap hash is rewritten, which also
-- drops the transition record of the previous blob.
-- ARGV: 1 now, 2 instance,
--   3 results mode: 'replace' (a state that holds results: the results hash becomes exactly
--     the pairs given, and there is no archive) or 'archive' (Completed, Failed: the results
--     move to the archive, D5),
--   4 meta entry ('' = none),
--   5 the blob,
--   6 n = number of snapshot hash fields, then n field/value pairs, then result pairs.
-- Returns 'ok'.

local n = tonumber(ARGV[6])
local first_result = 7 + 2 * n
redis.call('SET', K_BLOB, ARGV[5])
redis.call('DEL', K_SNAP)
redis.call('HSET', K_SNAP, 'rev', redis.call('INCR', K_SEQ), unpack(ARGV, 7, first_result - 1))

if ARGV[3] == 'replace' then
  redis.call('DEL', K_RES, K_ARCH)
else
  archive_results()
end
-- In chunks: unpack is bounded by the Lua stack.
for from = first_result, #ARGV, 1000 do
  redis.call('HSET', K_RES, unpack(ARGV, from, math.min(from + 999, #ARGV)))
end

if ARGV[4] ~= '' then
  redis.call('HSET', K_META, INSTANCE, ARGV[4])
else
  redis.call('HDEL', K_META, INSTANCE)
end
redis.call('SADD', K_INST, INSTANCE)
refresh()
return 'ok'
