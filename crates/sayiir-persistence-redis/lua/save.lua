-- Stores a whole snapshot with its index entries, optionally as a compare-and-set.
-- ARGV: 1 now, 2 instance,
--   3 revision field to compare ('' = unconditional): 'rev' (bumped by every write) or
--     'srev' (the state revision: bumped here only, not by save_task_result), 4 its
--     expected value,
--   5 signal kind to consume ('' = none), 6 its expected encoded request,
--   7 event name to pop ('' = none), 8 the payload expected at the head of that queue,
--   9 '1' to require that no cancel or pause request is pending,
--  10 '1' to drop a pending Pause request (unpause),
--  11 '1' to keep the stored last completed task id (a transition that preserves it: a
--     result recorded since the read stays the last one),
--  12 results mode: 'replace' (the results hash becomes exactly the pairs given) or 'add',
--  13 meta entry ('' = none),
--  14 the blob,
--  15 n = number of snapshot hash fields, then n field/value pairs, then result pairs.
-- Returns {'ok', revision} or {'conflict'}.

if ARGV[3] ~= '' and redis.call('HGET', K_SNAP, ARGV[3]) ~= ARGV[4] then
  return {'conflict'}
end
if ARGV[5] ~= '' and redis.call('HGET', K_SIG, ARGV[5]) ~= ARGV[6] then
  return {'conflict'}
end
if ARGV[7] ~= '' and ev_head(ARGV[7]) ~= ARGV[8] then
  return {'conflict'}
end
if ARGV[9] == '1' and redis.call('HLEN', K_SIG) > 0 then
  return {'conflict'}
end

if ARGV[5] ~= '' then
  redis.call('HDEL', K_SIG, ARGV[5])
end
if ARGV[7] ~= '' then
  ev_pop(ARGV[7])
end
if ARGV[10] == '1' then
  redis.call('HDEL', K_SIG, 'Pause')
end
local kept_last = false
if ARGV[11] == '1' then
  kept_last = redis.call('HGET', K_SNAP, 'last')
end

local revision = next_revision()
local n = tonumber(ARGV[15])
local first_result = 16 + 2 * n
redis.call('SET', K_BLOB, ARGV[14])
redis.call('DEL', K_SNAP)
redis.call('HSET', K_SNAP, 'rev', revision, 'srev', revision, unpack(ARGV, 16, first_result - 1))
if kept_last then
  redis.call('HSET', K_SNAP, 'last', kept_last)
end

if ARGV[12] == 'replace' then
  redis.call('DEL', K_RES)
end
-- In chunks: unpack is bounded by the Lua stack.
for from = first_result, #ARGV, 1000 do
  redis.call('HSET', K_RES, unpack(ARGV, from, math.min(from + 999, #ARGV)))
end

if ARGV[13] ~= '' then
  redis.call('HSET', K_META, INSTANCE, ARGV[13])
else
  redis.call('HDEL', K_META, INSTANCE)
end
redis.call('SADD', K_INST, INSTANCE)
refresh()
return {'ok', revision}
