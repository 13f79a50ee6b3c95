//! The Lua scripts, loaded from `lua/*.lua` once per backend.
//!
//! Per-workflow scripts are prefixed with `lua/common.lua` (keys and the snapshot reader);
//! the scripts that change a workflow also with `lua/index.lua`, the index rules every
//! write must apply. Reads go without it: the prelude runs on every call, and its
//! definitions cost server time. Calls send `EVALSHA`; after a `NOSCRIPT` reply (`SCRIPT FLUSH`,
//! a restart, a failover to a fresh replica) the same call is sent once as `EVAL` with the
//! source, which also caches the script again. Unlike `SCRIPT LOAD` + `EVALSHA`, that
//! fallback cannot meet a second flush in between.

use redis::{Arg, Cmd, Script};

/// One script: its source and its SHA-1 (computed once, via `redis::Script`).
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) sha: String,
    pub(crate) source: String,
    /// Whether the script may write (so `RedisOptions::wait_for_replicas` waits after it).
    pub(crate) writes: bool,
}

impl Lua {
    fn new(source: String, writes: bool) -> Self {
        Self { sha: Script::new(&source).get_hash().to_string(), source, writes }
    }

    /// `evalsha` (`EVALSHA <sha> <numkeys> ...`) as `EVAL <source> <numkeys> ...`.
    pub(crate) fn eval_command(&self, evalsha: &Cmd) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(self.source.as_bytes());
        for arg in evalsha.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}

const COMMON: &str = include_str!("../lua/common.lua");
const INDEX: &str = include_str!("../lua/index.lua");

/// One compiled script per atomic operation.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) save: Lua,
    pub(crate) load: Lua,
    pub(crate) save_task_result: Lua,
    pub(crate) load_task_result: Lua,
    pub(crate) delete: Lua,
    pub(crate) store_signal: Lua,
    pub(crate) apply_signal: Lua,
    pub(crate) unpause: Lua,
    pub(crate) clear_signal: Lua,
    pub(crate) send_event: Lua,
    pub(crate) consume_event: Lua,
    pub(crate) claim: Lua,
    pub(crate) release: Lua,
    pub(crate) extend: Lua,
    pub(crate) purge_claim: Lua,
    pub(crate) advance: Lua,
    pub(crate) take: Lua,
    pub(crate) unindex: Lua,
    pub(crate) poll: Lua,
    pub(crate) prune: Lua,
    pub(crate) relist: Lua,
    pub(crate) import: Lua,
    pub(crate) counts: Lua,
}

/// A per-workflow script that changes the workflow.
fn workflow(body: &str) -> Lua {
    Lua::new(format!("{COMMON}\n{INDEX}\n{body}"), true)
}

/// A per-workflow script without the index rules: one that only reads, or (`writes`) one that
/// only takes a workflow out of the indexes.
fn reader(body: &str, writes: bool) -> Lua {
    Lua::new(format!("{COMMON}\n{body}"), writes)
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            save: workflow(include_str!("../lua/save.lua")),
            load: reader(include_str!("../lua/load.lua"), false),
            save_task_result: workflow(include_str!("../lua/save_task_result.lua")),
            load_task_result: reader(include_str!("../lua/load_task_result.lua"), false),
            delete: workflow(include_str!("../lua/delete.lua")),
            store_signal: workflow(include_str!("../lua/store_signal.lua")),
            apply_signal: workflow(include_str!("../lua/apply_signal.lua")),
            unpause: workflow(include_str!("../lua/unpause.lua")),
            clear_signal: workflow(include_str!("../lua/clear_signal.lua")),
            send_event: workflow(include_str!("../lua/send_event.lua")),
            consume_event: workflow(include_str!("../lua/consume_event.lua")),
            claim: workflow(include_str!("../lua/claim.lua")),
            release: workflow(include_str!("../lua/release.lua")),
            extend: workflow(include_str!("../lua/extend.lua")),
            purge_claim: workflow(include_str!("../lua/purge_claim.lua")),
            advance: workflow(include_str!("../lua/advance.lua")),
            take: reader(include_str!("../lua/take.lua"), false),
            unindex: reader(include_str!("../lua/unindex.lua"), true),
            poll: Lua::new(include_str!("../lua/poll.lua").to_string(), true),
            counts: Lua::new(include_str!("../lua/counts.lua").to_string(), false),
            prune: workflow(include_str!("../lua/prune.lua")),
            relist: workflow(include_str!("../lua/relist.lua")),
            // save.lua as a function, so the import runs the very same save.
            import: workflow(&format!(
                "local function save_body()\n{}\nend\n{}",
                include_str!("../lua/save.lua"),
                include_str!("../lua/import.lua")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use sayiir_persistence::results::status_holds_results;
    use sayiir_persistence::sayiir_core::snapshot::SnapshotStatus;

    use super::COMMON;

    /// `holds_results` in `common.lua` lists exactly the statuses of the core rule.
    #[test]
    fn lua_holds_results_matches_the_core_rule() {
        let start = COMMON.find("local function holds_results(st)").unwrap_or(0);
        let body = &COMMON[start..];
        let body = &body[..body.find("\nend").unwrap_or(body.len())];
        let listed: Vec<&str> = body.split('\'').skip(1).step_by(2).collect();
        assert!(!listed.is_empty(), "holds_results not found in common.lua");
        for status in [
            SnapshotStatus::InProgress,
            SnapshotStatus::Completed,
            SnapshotStatus::Failed,
            SnapshotStatus::Cancelled,
            SnapshotStatus::Paused,
        ] {
            let name: &str = status.as_ref();
            assert_eq!(listed.contains(&name), status_holds_results(name), "{name}");
        }
    }

    /// `TERMINAL` in `prune.lua` lists exactly the core's terminal statuses.
    #[test]
    fn lua_terminal_matches_the_core_rule() {
        let prune = include_str!("../lua/prune.lua");
        let line = prune.lines().find(|l| l.starts_with("local TERMINAL")).unwrap_or_default();
        let mut listed: Vec<&str> = line
            .split(['{', '}', ','])
            .filter_map(|p| p.split('=').next())
            .map(str::trim)
            .collect();
        listed.retain(|p| !p.is_empty() && !p.starts_with("local"));
        let mut core = sayiir_persistence::status::TERMINAL.to_vec();
        core.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, core);
    }
}
