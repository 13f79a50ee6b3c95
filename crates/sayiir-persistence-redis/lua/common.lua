-- Shared prelude, prepended to every per-workflow script (see src/scripts.rs); the scripts
-- that change a workflow also get lua/index.lua.
--
-- KEYS (every per-workflow script receives all of them, in this order):
--   1 snap     hash: the denormalised fields of the snapshot (small: stays a listpack)
--   2 blob     string: the codec blob, without task results
--   3 res      hash: task_id -> output, the results of a state that holds them
--   4 sig      hash: Cancel / Pause -> encoded request
--   5 clm      hash: task_id -> "<claimed_ms> <expires_ms|-> <worker>"
--   6 ev       hash: event queues, see the ev_* helpers
--   7 arch     hash: task_id -> output, the archive of a Completed or Failed workflow (§ Results
-- survive completion):              `res` renamed when the workflow reaches one of those states
--   8 stage    hash: the results save_snapshot writes natively in the same transaction,
--              just before save.lua renames the hash to `res` (exists only in between)
--   9 ready    global zset: runnable workflows, score priority * SPAN + updated_at
--  10 parked   global zset: workflows waiting for a time (delay, signal timeout, backoff)
--  11 meta     global hash: instance -> tags and last failed worker of the current task
--  12 inst     global set: every stored instance id
--  13 cexp     global zset: "<len(instance)>:<instance><task>" -> claim expiry (server ms;
--              +inf for a claim that never expires)
--  14 seq      global counter: source of blob revisions (`rev` in snap, bumped by save.lua)
--  15 listed   global hash: instance -> its listing entry (see `relist` in lua/index.lua); the
--              listing sorted sets are named after it: `<listed>:<status>` and
--              `<listed>:<status>:<definition>`
-- ARGV[1] is the application clock in Unix milliseconds, ARGV[2] the instance id.

local K_SNAP, K_BLOB, K_RES, K_SIG, K_CLM, K_EV, K_ARCH, K_STAGE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_READY, K_PARKED, K_META, K_INST, K_CEXP, K_SEQ, K_LISTED =
  KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local APP_NOW = tonumber(ARGV[1])
local INSTANCE = ARGV[2]

-- Whether a state holds its own task results (results::status_holds_results of the core
-- crate; src/scripts.rs tests that the two agree): for the others (Completed, Failed) the
-- archive hash holds them.
local function holds_results(st)
  return st == 'InProgress' or st == 'Paused' or st == 'Cancelled'
end

-- Moves the results to the archive, when a workflow becomes Completed or Failed (§ Results survive
-- completion). A state that held no results (a terminal state saved again) leaves the archive as it
-- is.
local function archive_results()
  if redis.call('EXISTS', K_RES) == 1 then
    redis.call('RENAME', K_RES, K_ARCH)
  end
end

-- The stored snapshot without its results, packed (cmsgpack: one string is cheaper to read
-- than one reply element per value) for src/snapshot.rs (`Loaded::read`): the blob, the
-- snap fields below, then the park node `pid` and its output when a script completed the
-- workflow by advancing a park (`xv`): replaying the advancement needs that output, which
-- is in the archive by then. The results are read beside the script (load_snapshot sends
-- `HGETALL` in the same transaction: a result moved through a script costs far more
-- server time), or by `unpause.lua`. False when no snapshot is stored.
local SNAPSHOT_FIELDS = {'st', 'tp', 'last', 'upd', 'xt', 'xd', 'xv', 'xe', 'xq', 'xa', 'xi'}
local function packed_snapshot()
  local f = redis.call('HMGET', K_SNAP, unpack(SNAPSHOT_FIELDS))
  if not f[1] then
    return false
  end
  local park, output = false, false
  if f[1] == 'Completed' and f[7] then
    park = redis.call('HGET', K_SNAP, 'pid')
    if park then
      output = redis.call('HGET', K_ARCH, park)
    end
  end
  return cmsgpack.pack(redis.call('GET', K_BLOB) or '', f, park, output)
end
