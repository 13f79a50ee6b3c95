-- The index rules and helpers of the scripts that change a workflow, prepended after
-- lua/common.lua (see src/scripts.rs).

-- Scores are priority * SPAN + updated_at, exact in a double for any u8 priority.
local SPAN = 8589934592

-- Integers as decimal text without exponent (tostring switches to one past 14 digits).
local function fmt(n)
  return string.format('%.0f', n)
end

-- The server clock in milliseconds: one clock for every worker machine.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function claim_member(task)
  return #INSTANCE .. ':' .. INSTANCE .. task
end

-- A claim value: claimed ms, expiry ms (or nil: never expires), worker.
local function parse_claim(value)
  local claimed, expires, worker = string.match(value, '^(%-?%d+) (%S+) (.*)$')
  if expires == '-' then
    return tonumber(claimed), nil, worker
  end
  return tonumber(claimed), tonumber(expires), worker
end

-- Whether `task` holds a live claim at `now_ms` (server clock; when nil, the clock is read
-- only if a claim exists).
local function claim_live(task, now_ms)
  local value = redis.call('HGET', K_CLM, task)
  if not value then
    return false
  end
  local _, expires = parse_claim(value)
  return expires == nil or (now_ms or server_ms()) < expires
end

-- Event queues of one workflow live in one hash (so a delete is one DEL and every key is
-- known in advance): "h\0<name>" oldest sequence number, "t\0<name>" newest,
-- "m\0<seq>\0<name>" the payloads. Names never contain NUL (ids are validated).
local function ev_head_field(name) return 'h\0' .. name end
local function ev_tail_field(name) return 't\0' .. name end
local function ev_msg_field(seq, name) return 'm\0' .. seq .. '\0' .. name end

local function ev_head(name)
  local head = redis.call('HGET', K_EV, ev_head_field(name))
  if not head then
    return nil
  end
  return redis.call('HGET', K_EV, ev_msg_field(head, name))
end

-- Appends `payload` to the queue `name`.
local function ev_push(name, payload)
  local tail = redis.call('HINCRBY', K_EV, ev_tail_field(name), 1)
  redis.call('HSET', K_EV, ev_msg_field(fmt(tail), name), payload)
  redis.call('HSETNX', K_EV, ev_head_field(name), fmt(tail))
end

local function ev_pop(name)
  local head = redis.call('HGET', K_EV, ev_head_field(name))
  if not head then
    return nil
  end
  local field = ev_msg_field(head, name)
  local payload = redis.call('HGET', K_EV, field)
  redis.call('HDEL', K_EV, field)
  if head == redis.call('HGET', K_EV, ev_tail_field(name)) then
    redis.call('HDEL', K_EV, ev_head_field(name), ev_tail_field(name))
  else
    redis.call('HSET', K_EV, ev_head_field(name), fmt(tonumber(head) + 1))
  end
  return payload
end

-- The rule of schedule::task_input: the initial input while no task has completed, else
-- the output of the last completed task.
local function input_available(has_input, last)
  if redis.call('HLEN', K_RES) == 0 then
    return has_input == '1'
  end
  return last ~= false and redis.call('HEXISTS', K_RES, last) == 1
end

-- The listing indexes (§ Listing, § Retention): each workflow is a member
-- "<updated_at, 20 digits>:<instance>" of the sorted set of its status and of the one of its
-- status and definition, every member with score 0, so that they sort by member: by
-- updated_at, then instance id, exactly (a score would lose precision past 2^53). K_LISTED
-- maps the instance to "<status>\0<member>\0<definition>", the entry to remove when it
-- changes. The sorted sets are named from data, so they cannot be declared in KEYS; they
-- share the global hash tag.
local function unlist()
  local entry = redis.call('HGET', K_LISTED, INSTANCE)
  if not entry then
    return
  end
  local status, member, definition = string.match(entry, '^([^%z]*)%z([^%z]*)%z(.*)$')
  redis.call('ZREM', K_LISTED .. ':' .. status, member)
  redis.call('ZREM', K_LISTED .. ':' .. status .. ':' .. definition, member)
  redis.call('HDEL', K_LISTED, INSTANCE)
end

-- Removes the stored workflow and everything stored for it, index and listing entries
-- included (§ Delete removes everything).
local function delete_everything()
  local tasks = redis.call('HKEYS', K_CLM)
  for i = 1, #tasks do
    redis.call('ZREM', K_CEXP, claim_member(tasks[i]))
  end
  redis.call('DEL', K_SNAP, K_BLOB, K_RES, K_SIG, K_CLM, K_EV, K_ARCH, K_STAGE)
  redis.call('ZREM', K_READY, INSTANCE)
  redis.call('ZREM', K_PARKED, INSTANCE)
  redis.call('HDEL', K_META, INSTANCE)
  redis.call('SREM', K_INST, INSTANCE)
  unlist()
end

-- Puts the workflow in the listing indexes its stored status, definition and updated_at call
-- for; a workflow no longer stored leaves them. Called by the scripts that write one of those
-- three fields (save, save_task_result, apply_signal, unpause, advance, relist), not by the
-- claim and signal scripts, which leave them as they are.
local function relist()
  local f = redis.call('HMGET', K_SNAP, 'st', 'def', 'upd')
  local status, definition, upd = f[1], f[2] or '', f[3] or '0'
  if not status then
    unlist()
    return
  end
  local member = string.rep('0', 20 - #upd) .. upd .. ':' .. INSTANCE
  local entry = status .. '\0' .. member .. '\0' .. definition
  if redis.call('HGET', K_LISTED, INSTANCE) == entry then
    return
  end
  unlist()
  redis.call('ZADD', K_LISTED .. ':' .. status, 0, member)
  redis.call('ZADD', K_LISTED .. ':' .. status .. ':' .. definition, 0, member)
  redis.call('HSET', K_LISTED, INSTANCE, entry)
end

-- Puts the workflow in the index its stored state calls for (§ Eligibility rules, re-expressed
-- from schedule::schedule_of): `ready` when a worker may take its task now, `parked` when
-- it waits for a time or has an event to wake it, neither otherwise.
local function refresh()
  local f = redis.call('HMGET', K_SNAP,
    'st', 'pk', 'cur', 'hin', 'last', 'upd', 'prio', 'nb', 'wake', 'sig')
  local st, pk, cur, hin, last, upd, prio, nb, wake, sig =
    f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
  local ready, parked = nil, nil
  if st == 'InProgress' and redis.call('HLEN', K_SIG) == 0 then
    if pk == 'AtTask' and cur then
      if redis.call('HEXISTS', K_RES, cur) == 0 and input_available(hin, last)
        and not claim_live(cur) then
        if nb and tonumber(nb) > APP_NOW then
          parked = tonumber(nb)
        else
          ready = tonumber(prio) * SPAN + math.min(tonumber(upd), SPAN - 1)
        end
      end
    elseif pk == 'AtDelay' and wake then
      parked = tonumber(wake)
    elseif pk == 'AtSignal' and sig then
      if redis.call('HEXISTS', K_EV, ev_head_field(sig)) == 1 then
        parked = 0
      elseif wake then
        parked = tonumber(wake)
      end
    end
  end
  if ready then
    redis.call('ZADD', K_READY, fmt(ready), INSTANCE)
  else
    redis.call('ZREM', K_READY, INSTANCE)
  end
  if parked then
    redis.call('ZADD', K_PARKED, fmt(parked), INSTANCE)
  else
    redis.call('ZREM', K_PARKED, INSTANCE)
  end
end

