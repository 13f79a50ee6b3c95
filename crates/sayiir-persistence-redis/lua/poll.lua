-- The index part of find_available_tasks, on global keys only.
-- KEYS: 1 ready, 2 meta, 3 parked, 4 claim expiries.
-- ARGV: 1 now (application clock, ms), 2 limit, 3 worker, 4 batch size for due work,
--   5.. the worker's tags.
-- Returns, packed: due parked instances, expired claim members, candidates, where candidates are
-- flat triples (instance, score, biased 0/1): for each priority level, in index order, the
-- first `limit` candidates the worker accepts that did not last fail on it, and the first
-- `limit` that did (those sort after all others, § Ordering, aging and worker bias).

local K_READY, K_META, K_PARKED, K_CEXP = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local SPAN = 8589934592
local limit = tonumber(ARGV[2])
local worker = ARGV[3]
local batch = tonumber(ARGV[4])
local worker_tags, has_tags = {}, false
for i = 5, #ARGV do
  worker_tags[ARGV[i]] = true
  has_tags = true
end

local t = redis.call('TIME')
local server_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', K_PARKED, '-inf', ARGV[1], 'LIMIT', 0, batch)
-- A claim is live while now < expiry (claim_live in lua/index.lua): expired at expiry.
local expired = redis.call('ZRANGEBYSCORE', K_CEXP, '-inf',
  string.format('%.0f', server_now), 'LIMIT', 0, batch)

-- meta: netstrings "<len>:<bytes>"; the first is 'F' .. worker or 'N', then the tags.
local function accepts(meta)
  local pos, first, biased = 1, true, false
  while pos <= #meta do
    local colon = string.find(meta, ':', pos, true)
    local len = tonumber(string.sub(meta, pos, colon - 1))
    local item = string.sub(meta, colon + 1, colon + len)
    pos = colon + len + 1
    if first then
      biased = item == 'F' .. worker
      first = false
    elseif has_tags and not worker_tags[item] then
      return false, false
    end
  end
  return true, biased
end

local out = {}
local page = math.max(limit, 32)
local low = '-inf'
while true do
  local first = redis.call('ZRANGEBYSCORE', K_READY, low, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #first == 0 then
    break
  end
  local level = math.floor(tonumber(first[2]) / SPAN)
  local high = string.format('(%.0f', (level + 1) * SPAN)
  local fresh, biased_count, offset = 0, 0, 0
  while fresh < limit do
    local items = redis.call('ZRANGEBYSCORE', K_READY, string.format('%.0f', level * SPAN),
      high, 'WITHSCORES', 'LIMIT', offset, page)
    for i = 1, #items, 2 do
      local meta = redis.call('HGET', K_META, items[i])
      local ok, biased = true, false
      if meta then
        ok, biased = accepts(meta)
      end
      if ok and biased then
        if biased_count < limit then
          biased_count = biased_count + 1
          out[#out + 1] = items[i]
          out[#out + 1] = items[i + 1]
          out[#out + 1] = 1
        end
      elseif ok then
        fresh = fresh + 1
        out[#out + 1] = items[i]
        out[#out + 1] = items[i + 1]
        out[#out + 1] = 0
        if fresh >= limit then
          break
        end
      end
    end
    if #items < 2 * page then
      break
    end
    offset = offset + page
  end
  low = string.format('%.0f', (level + 1) * SPAN)
end
return cmsgpack.pack(due, expired, out)
