-- Shared prelude, prepended to every per-workflow script (see src/scripts.rs); the scripts
-- that change a workflow also get lua/index.lua.
--
-- KEYS (every per-workflow script receives all of them, in this order):
--   1 snap     hash: the denormalised fields of the snapshot (small: stays a listpack)
--   2 blob     string: the codec blob, without task results
--   3 res      hash: task_id -> output (the current results, or the archive once terminal)
--   4 sig      hash: Cancel / Pause -> encoded request
--   5 clm      hash: task_id -> "<claimed_ms> <expires_ms|-> <worker>"
--   6 ev       hash: event queues, see the ev_* helpers
--   7 ready    global zset: runnable workflows, score priority * SPAN + updated_at
--   8 parked   global zset: workflows waiting for a time (delay, signal timeout, backoff)
--   9 meta     global hash: instance -> tags and last failed worker of the current task
--  10 inst     global set: every stored instance id
--  11 cexp     global zset: "<len(instance)>:<instance><task>" -> claim expiry (server ms)
--  12 seq      global counter: source of blob revisions (`rev` in snap, bumped by save.lua)
-- ARGV[1] is the application clock in Unix milliseconds, ARGV[2] the instance id.

local K_SNAP, K_BLOB, K_RES, K_SIG, K_CLM, K_EV =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_READY, K_PARKED, K_META, K_INST, K_CEXP, K_SEQ =
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local APP_NOW = tonumber(ARGV[1])
local INSTANCE = ARGV[2]

-- Whether a state holds its own task results (results::status_holds_results of the core
-- crate; src/scripts.rs tests that the two agree): for the others (Completed, Failed) the
-- results hash is the archive.
local function holds_results(st)
  return st == 'InProgress' or st == 'Paused' or st == 'Cancelled'
end

-- The stored snapshot for src/snapshot.rs (`Loaded::read`): {packed blob and snap fields
-- below, results as flat task/output pairs}. The small values are packed (cmsgpack) into
-- one string, cheaper to read than one reply element each; the results are not (packing
-- large values in Lua costs more server time than it saves). Results are sent for the
-- states that hold them (holds_results), and for a workflow a script advanced (`xv`):
-- replaying the advancement may need them (a delay's passthrough output). False when no
-- snapshot is stored.
local SNAPSHOT_FIELDS = {'st', 'tp', 'last', 'upd', 'xt', 'xd', 'xv', 'xe', 'xq', 'xa', 'xi'}
local function stored_snapshot()
  local f = redis.call('HMGET', K_SNAP, unpack(SNAPSHOT_FIELDS))
  if not f[1] then
    return false
  end
  local results = {}
  if holds_results(f[1]) or f[7] then
    results = redis.call('HGETALL', K_RES)
  end
  return {cmsgpack.pack(redis.call('GET', K_BLOB) or '', f), results}
end
