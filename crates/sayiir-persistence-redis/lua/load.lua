-- Reads a snapshot in one atomic step.
-- Returns false when absent, else the reply of push_snapshot.

local out = {}
if not push_snapshot(out) then
  return false
end
return out
