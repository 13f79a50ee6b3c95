//! Diagnostics: the plans PostgreSQL runs for `find_available_tasks`, `list_workflows` and
//! `prune_finished_batch`.

use chrono::{Duration, Utc};
use sqlx::Row;

use crate::error::db_all;
use crate::schedule::{aging_seconds, unix_seconds};
use crate::validation::{IdKind, validate_id};
use crate::{BackendError, PostgresBackend};
use sayiir_persistence::listing::ListRequest;
use sayiir_persistence::operation::{Call, FindRequest};
use sayiir_persistence::retention::PruneRequest;

use crate::advance::ADVANCE_BATCH;

impl PostgresBackend {
    /// The plans PostgreSQL runs for `find_available_tasks` with these arguments, as
    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` documents: first the search for due parks,
    /// then the pick of ready tasks. The statements are executed (expired claims are purged)
    /// but nothing is advanced.
    ///
    /// Meant for operators and benchmarks checking that the index plans are used.
    ///
    /// # Errors
    /// `Backend` if a statement fails.
    pub async fn explain_find_available_tasks(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> Result<Vec<String>, BackendError> {
        let call = Call::Maintenance { operation: "explain_find_available_tasks", instance_id: "" };
        let explain =
            self.explain_find(FindRequest { worker_id, limit, aging_interval, worker_tags });
        self.calls().run(call, explain).await
    }

    /// See [`Self::explain_find_available_tasks`].
    async fn explain_find(&self, request: FindRequest<'_>) -> Result<Vec<String>, BackendError> {
        let FindRequest { worker_id, limit, aging_interval, worker_tags } = request;
        validate_id(IdKind::Worker, worker_id)?;
        let explain = |sql: &str| format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
        let now = Utc::now();
        let due = sqlx::query(sqlx::AssertSqlSafe(explain(self.statement(|s| &s.due).as_str())))
            .bind(now.timestamp_millis())
            .bind(ADVANCE_BATCH)
            .fetch_one(&self.pool)
            .await
            .map_err(db_all("explain find_available_tasks"))?;
        let pick = sqlx::query(sqlx::AssertSqlSafe(explain(self.statement(|s| &s.pick).as_str())))
            .bind(worker_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(worker_tags)
            .bind(now.timestamp_millis())
            .bind(unix_seconds(now))
            .bind(aging_seconds(aging_interval))
            .bind(Vec::<String>::new())
            .fetch_one(&self.pool)
            .await
            .map_err(db_all("explain find_available_tasks"))?;
        // The plan is of type `json`, whose wire format is its text.
        [due, pick]
            .iter()
            .map(|row| row.try_get_unchecked::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db_all("explain find_available_tasks"))
    }

    /// The plan PostgreSQL runs for `list_workflows(request)`, as an `EXPLAIN (ANALYZE,
    /// BUFFERS, FORMAT JSON)` document.
    ///
    /// # Errors
    /// `Backend` for an invalid request or a failed statement.
    pub async fn explain_list_workflows(
        &self,
        request: &ListRequest,
    ) -> Result<String, BackendError> {
        let call = Call::Maintenance { operation: "explain_list_workflows", instance_id: "" };
        let explain = async {
            request.check()?;
            let sql = explained(&self.list_statement(request));
            let row = crate::catalog::list_query(sql, request)
                .fetch_one(&self.pool)
                .await
                .map_err(db_all("explain list_workflows"))?;
            row.try_get_unchecked::<String, _>(0).map_err(db_all("explain list_workflows"))
        };
        self.calls().run(call, explain).await
    }

    /// The plan PostgreSQL runs for one `prune_finished_batch(request)`, as an `EXPLAIN
    /// (ANALYZE, BUFFERS, FORMAT JSON)` document. The statement runs in a transaction that is
    /// rolled back: nothing is removed.
    ///
    /// # Errors
    /// `Backend` for an invalid request or a failed statement.
    pub async fn explain_prune_finished(
        &self,
        request: &PruneRequest,
    ) -> Result<String, BackendError> {
        let call = Call::Maintenance { operation: "explain_prune_finished", instance_id: "" };
        let explain = async {
            request.check()?;
            let sql = explained(&self.prune_statement(request));
            let mut tx = self.pool.begin().await.map_err(db_all("explain prune_finished"))?;
            let row = crate::catalog::prune_query(sql, request)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_all("explain prune_finished"))?;
            let plan =
                row.try_get_unchecked::<String, _>(0).map_err(db_all("explain prune_finished"));
            tx.rollback().await.map_err(db_all("explain prune_finished"))?;
            plan
        };
        self.calls().run(call, explain).await
    }
}

/// `sql` under `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`.
fn explained(sql: &sqlx::SqlStr) -> sqlx::SqlStr {
    use sqlx::SqlSafeStr;
    sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", sql.as_str()))
        .into_sql_str()
}
