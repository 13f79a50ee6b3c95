//! Listing: paging through the stored workflows, newest first, without reading their blobs.
//!
//! [`WorkflowListing`] is an extension beside the 0.4.0 traits (which stay as they were),
//! for operators and the admin tooling. Its behaviour is written down in
//! [`behaviour`](crate::behaviour), § Listing.

use std::cmp::Reverse;
use std::future::Future;

use crate::BackendError;

/// The page size of a [`ListRequest`] unless set: 100 workflows.
pub const DEFAULT_PAGE: usize = 100;

/// The largest page a [`ListRequest`] may ask for: 1,000 workflows.
pub const MAX_PAGE: usize = 1_000;

/// Where a page ends: the last workflow returned. The next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListCursor {
    /// The `updated_at` (Unix seconds) of the last workflow returned.
    pub updated_at: u64,
    /// Its instance id.
    pub instance_id: String,
}

impl ListCursor {
    /// The cursor as one line of text, `<updated_at>:<instance_id>`, for a command line or
    /// a URL.
    #[must_use]
    pub fn to_token(&self) -> String {
        format!("{}:{}", self.updated_at, self.instance_id)
    }

    /// Reads a cursor written by [`ListCursor::to_token`].
    ///
    /// # Errors
    /// `Backend` when `token` is not `<updated_at>:<instance_id>`.
    pub fn from_token(token: &str) -> Result<Self, BackendError> {
        let parsed = token.split_once(':').and_then(|(secs, id)| {
            let updated_at = secs.parse().ok()?;
            (!id.is_empty()).then(|| Self { updated_at, instance_id: id.to_string() })
        });
        parsed.ok_or_else(|| {
            BackendError::Backend(format!(
                "list_workflows: invalid cursor {token:?}; pass the `next` cursor of the \
                 previous page, written as <updated_at>:<instance_id>"
            ))
        })
    }
}

/// Which workflows a [`WorkflowListing::list_workflows`] page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListRequest {
    /// Only workflows in one of these statuses (`status::ALL` texts); every status when
    /// empty.
    pub statuses: Vec<String>,
    /// Only workflows of this definition (`WorkflowSnapshot::definition_hash`).
    pub definition_hash: Option<String>,
    /// The most workflows in the page (default [`DEFAULT_PAGE`], 1 to [`MAX_PAGE`]).
    pub limit: usize,
    /// Start after this workflow (the previous page's `next`); from the newest when `None`.
    pub after: Option<ListCursor>,
}

impl Default for ListRequest {
    /// The newest [`DEFAULT_PAGE`] workflows, every status and definition.
    fn default() -> Self {
        Self { statuses: Vec::new(), definition_hash: None, limit: DEFAULT_PAGE, after: None }
    }
}

impl ListRequest {
    /// Only workflows in `status` (added to any statuses already asked for).
    #[must_use]
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.statuses.push(status.into());
        self
    }

    /// Only workflows of the definition `definition_hash`.
    #[must_use]
    pub fn definition(mut self, definition_hash: impl Into<String>) -> Self {
        self.definition_hash = Some(definition_hash.into());
        self
    }

    /// At most `limit` workflows.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: ListCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// The statuses the page may hold: those asked for, each once, or all of them.
    #[must_use]
    pub fn wanted_statuses(&self) -> Vec<&'static str> {
        crate::status::ALL
            .into_iter()
            .filter(|status| self.statuses.is_empty() || self.statuses.iter().any(|s| s == status))
            .collect()
    }

    /// Checks the request before any I/O.
    ///
    /// # Errors
    /// `BackendError::Backend` for a `limit` of 0 or above [`MAX_PAGE`], an unknown status,
    /// or an empty definition hash.
    pub fn check(&self) -> Result<(), BackendError> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(BackendError::Backend(format!(
                "list_workflows: limit {} is out of range; use 1 to {MAX_PAGE}",
                self.limit
            )));
        }
        if let Some(unknown) =
            self.statuses.iter().find(|s| !crate::status::ALL.contains(&s.as_str()))
        {
            return Err(BackendError::Backend(format!(
                "list_workflows: unknown status {unknown:?}; use one of {:?}",
                crate::status::ALL
            )));
        }
        crate::validation::check_definition_filter(
            "list_workflows",
            self.definition_hash.as_deref(),
        )
    }

    /// The page of `candidates` (rows that match the request, in any order; more than
    /// `limit` allowed): sorted newest first, cut to `limit`, with the cursor of the next
    /// page when there may be one.
    #[must_use]
    pub fn page(&self, mut candidates: Vec<WorkflowSummary>) -> WorkflowPage {
        candidates.sort_by_key(|summary| Reverse(summary.cursor()));
        candidates.dedup_by(|a, b| a.instance_id == b.instance_id);
        candidates.truncate(self.limit);
        let next = (candidates.len() == self.limit)
            .then(|| candidates.last().map(WorkflowSummary::cursor))
            .flatten();
        WorkflowPage { workflows: candidates, next }
    }
}

/// One stored workflow as a listing shows it: what is stored beside the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSummary {
    /// The instance id.
    pub instance_id: String,
    /// The status (`status::ALL`).
    pub status: String,
    /// The definition hash.
    pub definition_hash: String,
    /// The snapshot's `updated_at`, Unix seconds.
    pub updated_at: u64,
}

impl WorkflowSummary {
    /// The cursor of a page that ends with this workflow.
    #[must_use]
    pub fn cursor(&self) -> ListCursor {
        ListCursor { updated_at: self.updated_at, instance_id: self.instance_id.clone() }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkflowPage {
    /// The workflows, newest `updated_at` first (then instance id, descending).
    pub workflows: Vec<WorkflowSummary>,
    /// The cursor of the next page; `None` when this page is the last.
    pub next: Option<ListCursor>,
}

/// Pages through the stored workflows. Implemented by every backend of this project.
pub trait WorkflowListing: Send + Sync {
    /// The workflows that match `request`, newest `updated_at` first (ties: instance id,
    /// descending), at most `request.limit`, after `request.after`. Blobs are not read: a
    /// workflow whose blob does not decode is listed as stored. Each page costs in proportion
    /// to `limit` times the statuses asked for, not to the number stored.
    ///
    /// A full page carries the cursor of the next one, which may turn out empty; a shorter
    /// page carries none. Pages are not a snapshot of one moment: a workflow saved between
    /// two pages moves to the front and is not seen again by later pages.
    ///
    /// # Errors
    /// `Backend` for an invalid request (see [`ListRequest::check`]) or a storage failure.
    fn list_workflows(
        &self,
        request: &ListRequest,
    ) -> impl Future<Output = Result<WorkflowPage, BackendError>> + Send;
}
