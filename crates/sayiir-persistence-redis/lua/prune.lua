-- Removes one finished workflow picked by prune_finished_batch, if it still qualifies: a
-- terminal status (status::TERMINAL of the core crate; src/scripts.rs tests that the two
-- agree), updated_at before the cut-off, and the definition asked for. A workflow saved again
-- since it was picked (back in progress, or newer) stays.
-- ARGV: 1 now, 2 instance, 3 cut-off (updated_at as 20 digits), 4 definition ('' = any),
--   5 '1' when the definition is a filter.
-- Returns 1 when removed, 0 otherwise.

local TERMINAL = {Completed = true, Failed = true, Cancelled = true}
local f = redis.call('HMGET', K_SNAP, 'st', 'upd', 'def')
if not f[1] then
  -- A listing entry that outlived its workflow (removed by an older version, or by hand):
  -- taken out, so that it no longer stands in front of the workflows a prune can remove.
  unlist()
  return 0
end
if not TERMINAL[f[1]] then
  return 0
end
local upd = f[2] or '0'
if string.rep('0', 20 - #upd) .. upd >= ARGV[3] then
  return 0
end
if ARGV[5] == '1' and (f[3] or '') ~= ARGV[4] then
  return 0
end
redis.call('DEL', K_STAGE)
delete_everything()
return 1
