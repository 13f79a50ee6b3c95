-- Stores a whole exported workflow (WorkflowTransfer::import_workflow) in one atomic step,
-- unless the instance already has a snapshot or buffered events. Prefixed with save.lua as
-- the function `save_body` (see src/scripts.rs).
-- ARGV: 1 now, 2 instance, 3 to 6 + 2n as save.lua takes them (mode 3 is 'absent' for a
--   record without snapshot: only events), then three lists, each a count then pairs:
--   events (signal name, payload) oldest first; archived results (task id, output);
--   pending requests (kind, encoded request).
-- Returns 'imported' or 'already'.

-- A queue exists while its head field does; a receipt alone (field "r\0<name>", see
-- consume_event.lua) is no buffered event.
local function has_events()
  local fields = redis.call('HKEYS', K_EV)
  for i = 1, #fields do
    if string.sub(fields[i], 1, 2) == 'h\0' then
      return true
    end
  end
  return false
end

if redis.call('EXISTS', K_SNAP) == 1 or has_events() then
  redis.call('DEL', K_STAGE)
  return 'already'
end

local mode = ARGV[3]
local next_arg = 7 + 2 * tonumber(ARGV[6])
local function list()
  local count = tonumber(ARGV[next_arg])
  local first = next_arg + 1
  next_arg = first + 2 * count
  return first, count
end
local events_at, events = list()
local archive_at, archived = list()
local requests_at, requests = list()

-- save_body checks its inputs before it writes: an error leaves nothing written.
if mode ~= 'absent' then
  local saved = save_body()
  if saved ~= 'ok' then
    return saved
  end
end
for i = 0, events - 1 do
  ev_push(ARGV[events_at + 2 * i], ARGV[events_at + 2 * i + 1])
end
for i = 0, archived - 1 do
  redis.call('HSET', K_ARCH, ARGV[archive_at + 2 * i], ARGV[archive_at + 2 * i + 1])
end
for i = 0, requests - 1 do
  redis.call('HSET', K_SIG, ARGV[requests_at + 2 * i], ARGV[requests_at + 2 * i + 1])
end
-- Events and requests decide where the workflow is indexed.
if mode ~= 'absent' then
  refresh()
end
return 'imported'
