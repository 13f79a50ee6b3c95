-- Stores a whole snapshot with its index entries, optionally as a compare-and-set.
-- ARGV: 1 now, 2 instance,
--   3 expected revision ('' = unconditional),
--   4 signal kind to consume ('' = none), 5 its expected encoded request,
--   6 event name to pop ('' = none), 7 the payload expected at the head of that queue,
--   8 '1' to require that no cancel or pause request is pending,
--   9 '1' to drop a pending Pause request (unpause),
--  10 results mode: 'replace' (the results hash becomes exactly the pairs given) or 'add',
--  11 meta entry ('' = none),
--  12 the blob,
--  13 n = number of snapshot hash fields, then n field/value pairs, then result pairs.
-- Returns {'ok', revision} or {'conflict'}.

if ARGV[3] ~= '' and redis.call('HGET', K_SNAP, 'rev') ~= ARGV[3] then
  return {'conflict'}
end
if ARGV[4] ~= '' and redis.call('HGET', K_SIG, ARGV[4]) ~= ARGV[5] then
  return {'conflict'}
end
if ARGV[6] ~= '' and ev_head(ARGV[6]) ~= ARGV[7] then
  return {'conflict'}
end
if ARGV[8] == '1' and redis.call('HLEN', K_SIG) > 0 then
  return {'conflict'}
end

if ARGV[4] ~= '' then
  redis.call('HDEL', K_SIG, ARGV[4])
end
if ARGV[6] ~= '' then
  ev_pop(ARGV[6])
end
if ARGV[9] == '1' then
  redis.call('HDEL', K_SIG, 'Pause')
end

local revision = next_revision()
local n = tonumber(ARGV[13])
redis.call('SET', K_BLOB, ARGV[12])
redis.call('DEL', K_SNAP)
for i = 14, 13 + 2 * n, 2 do
  redis.call('HSET', K_SNAP, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', K_SNAP, 'rev', revision)

if ARGV[10] == 'replace' then
  redis.call('DEL', K_RES)
end
for i = 14 + 2 * n, #ARGV, 2 do
  redis.call('HSET', K_RES, ARGV[i], ARGV[i + 1])
end

if ARGV[11] ~= '' then
  redis.call('HSET', K_META, INSTANCE, ARGV[11])
else
  redis.call('HDEL', K_META, INSTANCE)
end
redis.call('SADD', K_INST, INSTANCE)
refresh()
return {'ok', revision}
