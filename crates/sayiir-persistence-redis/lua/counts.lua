-- The counts of StoreStatistics::store_counts, in one atomic step, from set sizes.
-- KEYS: 1 the listing hash (`<listed>:<status>` sorted sets are named after it), 2 ready,
--   3 claim expiries (never-expiring claims at +inf). ARGV: the statuses.
-- Returns the workflow count of each status, in ARGV order, then the ready tasks, then the
-- live claims (expiry after the server clock).

local counts = {}
for i = 1, #ARGV do
  counts[i] = redis.call('ZCARD', KEYS[1] .. ':' .. ARGV[i])
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
counts[#ARGV + 1] = redis.call('ZCARD', KEYS[2])
counts[#ARGV + 2] = redis.call('ZCOUNT', KEYS[3], '(' .. string.format('%.0f', now_ms), '+inf')
return counts
