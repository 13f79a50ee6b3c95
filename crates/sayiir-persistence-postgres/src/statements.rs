//! Every statement of the backend, rendered once, when it connects: the templates (beside
//! the code that runs them, in each module) with the quoted schema in place of `{schema}`.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// The rendered statements. Cloning one is a reference-count increment.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `snapshot::SAVE`.
    pub(crate) save_snapshot: SqlStr,
    /// `snapshot::SAVE_TASK_RESULT`.
    pub(crate) save_task_result: SqlStr,
    /// `snapshot::LOAD_SQL`.
    pub(crate) load_snapshot: SqlStr,
    /// `snapshot::DELETE`.
    pub(crate) delete_snapshot: SqlStr,
    /// `snapshot::LIST`.
    pub(crate) list_snapshots: SqlStr,
    /// `signal::STORE`.
    pub(crate) store_signal: SqlStr,
    /// `signal::GET`.
    pub(crate) get_signal: SqlStr,
    /// `signal::GET_FOR_UPDATE`.
    pub(crate) get_signal_for_update: SqlStr,
    /// `signal::PENDING`.
    pub(crate) pending_signal: SqlStr,
    /// `signal::CLEAR`.
    pub(crate) clear_signal: SqlStr,
    /// `signal::LOCK_FOR_FLAG`.
    pub(crate) lock_for_flag: SqlStr,
    /// `signal::FLAG`.
    pub(crate) flag_signal: SqlStr,
    /// `signal::LOCK_WORKFLOW`.
    pub(crate) lock_workflow: SqlStr,
    /// `signal::SEND_EVENT`.
    pub(crate) send_event: SqlStr,
    /// `signal::CONSUME_EVENT`.
    pub(crate) consume_event: SqlStr,
    /// `signal::WAKE_LOCK`.
    pub(crate) wake_lock: SqlStr,
    /// `signal::write_and_clear_sql`.
    pub(crate) write_and_clear: SqlStr,
    /// `claim::CLAIM`.
    pub(crate) claim_task: SqlStr,
    /// `claim::RELEASE`.
    pub(crate) release_task_claim: SqlStr,
    /// `claim::EXTEND`.
    pub(crate) extend_task_claim: SqlStr,
    /// `claim::HOLDER`.
    pub(crate) claim_holder: SqlStr,
    /// `find::pick_sql`.
    pub(crate) pick: SqlStr,
    /// `advance::due_sql`.
    pub(crate) due: SqlStr,
    /// `advance::advance_sql`.
    pub(crate) advance: SqlStr,
    /// `advance::SETTLE_WOKEN`.
    pub(crate) settle_woken: SqlStr,
    /// `row::QUARANTINE`.
    pub(crate) quarantine: SqlStr,
    /// `result::LOAD`.
    pub(crate) load_task_result: SqlStr,
    /// `catalog::list_sql(false, false)`.
    pub(crate) list: SqlStr,
    /// `catalog::list_sql(false, true)`.
    pub(crate) list_after: SqlStr,
    /// `catalog::list_sql(true, false)`.
    pub(crate) list_by_definition: SqlStr,
    /// `catalog::list_sql(true, true)`.
    pub(crate) list_by_definition_after: SqlStr,
    /// `catalog::prune_sql(false)`.
    pub(crate) prune: SqlStr,
    /// `catalog::prune_sql(true)`.
    pub(crate) prune_by_definition: SqlStr,
    /// `records::EXPORT_REST`.
    pub(crate) export_rest: SqlStr,
    /// `records::IMPORT_STORED`.
    pub(crate) import_stored: SqlStr,
    /// `records::IMPORT_EVENTS`.
    pub(crate) import_events: SqlStr,
    /// `records::IMPORT_ARCHIVE`.
    pub(crate) import_archive: SqlStr,
    /// `records::IMPORT_SIGNAL`.
    pub(crate) import_signal: SqlStr,
    /// `records::UNSTARTED`.
    pub(crate) unstarted: SqlStr,
    /// `records::TASK_CLAIMS`.
    pub(crate) task_claims: SqlStr,
    /// `counts::COUNTS`.
    pub(crate) store_counts: SqlStr,
}

impl Statements {
    /// Renders every template for the schema `quoted_schema` (validated and quoted: nothing
    /// else is spliced into SQL text).
    pub(crate) fn render(quoted_schema: &str) -> Self {
        let render = |template: &str| -> SqlStr {
            let sql: Arc<str> = template.replace("{schema}", quoted_schema).into();
            AssertSqlSafe(sql).into_sql_str()
        };
        Self {
            save_snapshot: render(crate::snapshot::SAVE),
            save_task_result: render(crate::snapshot::SAVE_TASK_RESULT),
            load_snapshot: render(&crate::snapshot::LOAD_SQL),
            delete_snapshot: render(crate::snapshot::DELETE),
            list_snapshots: render(crate::snapshot::LIST),
            store_signal: render(crate::signal::STORE),
            get_signal: render(crate::signal::GET),
            get_signal_for_update: render(crate::signal::GET_FOR_UPDATE),
            pending_signal: render(crate::signal::PENDING),
            clear_signal: render(crate::signal::CLEAR),
            lock_for_flag: render(crate::signal::LOCK_FOR_FLAG),
            flag_signal: render(crate::signal::FLAG),
            lock_workflow: render(crate::signal::LOCK_WORKFLOW),
            send_event: render(crate::signal::SEND_EVENT),
            consume_event: render(crate::signal::CONSUME_EVENT),
            wake_lock: render(crate::signal::WAKE_LOCK),
            write_and_clear: render(&crate::signal::write_and_clear_sql()),
            claim_task: render(crate::claim::CLAIM),
            release_task_claim: render(crate::claim::RELEASE),
            extend_task_claim: render(crate::claim::EXTEND),
            claim_holder: render(crate::claim::HOLDER),
            pick: render(&crate::find::pick_sql()),
            due: render(&crate::advance::due_sql()),
            advance: render(&crate::advance::advance_sql()),
            settle_woken: render(crate::advance::SETTLE_WOKEN),
            quarantine: render(crate::row::QUARANTINE),
            load_task_result: render(crate::result::LOAD),
            list: render(&crate::catalog::list_sql(false, false)),
            list_after: render(&crate::catalog::list_sql(false, true)),
            list_by_definition: render(&crate::catalog::list_sql(true, false)),
            list_by_definition_after: render(&crate::catalog::list_sql(true, true)),
            prune: render(&crate::catalog::prune_sql(false)),
            prune_by_definition: render(&crate::catalog::prune_sql(true)),
            export_rest: render(crate::records::EXPORT_REST),
            import_stored: render(crate::records::IMPORT_STORED),
            import_events: render(crate::records::IMPORT_EVENTS),
            import_archive: render(crate::records::IMPORT_ARCHIVE),
            import_signal: render(crate::records::IMPORT_SIGNAL),
            unstarted: render(crate::records::UNSTARTED),
            task_claims: render(crate::records::TASK_CLAIMS),
            store_counts: render(crate::counts::COUNTS),
        }
    }
}
