//! `RetentionStore` and `WorkflowListing` for the in-memory backend, on the listing indexes
//! of `state` (per status, and per status and definition, ordered by `updated_at`).

use std::collections::BTreeSet;

use crate::BackendError;
use crate::listing::{ListRequest, WorkflowListing, WorkflowPage, WorkflowSummary};
use crate::operation::Call;
use crate::retention::{PruneRequest, RetentionStore};
use crate::status::TERMINAL;

use super::InMemoryBackend;
use super::state::{CatalogKey, State};

impl State {
    /// The listing index of `status`, of one definition if given.
    fn catalog_of(
        &self,
        status: &'static str,
        definition: Option<&String>,
    ) -> Option<&BTreeSet<CatalogKey>> {
        match definition {
            None => self.by_status.get(status),
            Some(hash) => self.by_definition.get(&(status, hash.clone())),
        }
    }

    /// The finished workflows `request` prunes next: the oldest `batch_size` of them.
    fn prune_candidates(&self, request: &PruneRequest) -> Vec<CatalogKey> {
        let before = (request.finished_before, String::new());
        let mut found: Vec<CatalogKey> = TERMINAL
            .into_iter()
            .filter_map(|status| self.catalog_of(status, request.definition_hash.as_ref()))
            .flat_map(|set| set.range(..before.clone()).take(request.batch_size).cloned())
            .collect();
        found.sort();
        found.truncate(request.batch_size);
        found
    }

    /// Up to `request.limit` summaries of `status` after the request's cursor, newest first.
    fn newest(&self, status: &'static str, request: &ListRequest) -> Vec<WorkflowSummary> {
        let Some(set) = self.catalog_of(status, request.definition_hash.as_ref()) else {
            return Vec::new();
        };
        let keys: Box<dyn Iterator<Item = &CatalogKey>> = match &request.after {
            Some(after) => {
                Box::new(set.range(..(after.updated_at, after.instance_id.clone())).rev())
            }
            None => Box::new(set.iter().rev()),
        };
        keys.take(request.limit)
            .filter_map(|(updated_at, id)| {
                let listed = self.workflows.get(id)?.listed.as_ref()?;
                Some(WorkflowSummary {
                    instance_id: id.clone(),
                    status: status.to_string(),
                    definition_hash: listed.definition_hash.clone(),
                    updated_at: *updated_at,
                })
            })
            .collect()
    }
}

impl RetentionStore for InMemoryBackend {
    async fn prune_finished_batch(&self, request: &PruneRequest) -> Result<u64, BackendError> {
        self.calls()
            .run(Call::PruneFinished(request), async {
                let mut state = self.lock()?;
                let mut pruned = 0;
                for (_, instance_id) in state.prune_candidates(request) {
                    if state.delete(&instance_id) {
                        pruned += 1;
                    }
                }
                Ok(pruned)
            })
            .await
    }
}

impl WorkflowListing for InMemoryBackend {
    async fn list_workflows(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        self.calls()
            .run(Call::ListWorkflows(request), async {
                let state = self.lock()?;
                let candidates = request
                    .wanted_statuses()
                    .into_iter()
                    .flat_map(|status| state.newest(status, request))
                    .collect();
                Ok(request.page(candidates))
            })
            .await
    }
}
