//! One format for what an error message says a call was about, shared by every backend:
//! `<System> <operation> (instance "i", task "t", worker "w") during <step>: <what happened>`.
//! Ids are quoted and escaped, so an id with spaces or control characters stays readable.

use std::fmt;

use crate::BackendError;

/// The system, operation, ids and step of a call, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    system: &'static str,
    operation: &'a str,
    instance: Option<&'a str>,
    task: Option<&'a str>,
    worker: Option<&'a str>,
    step: Option<&'a str>,
}

impl<'a> ErrorContext<'a> {
    /// `operation` of `system` (as a person names it: `SQLite`, `PostgreSQL`, `Redis`).
    #[must_use]
    pub const fn new(system: &'static str, operation: &'a str) -> Self {
        Self { system, operation, instance: None, task: None, worker: None, step: None }
    }

    /// The workflow instance concerned (an empty id is left out).
    #[must_use]
    pub fn instance(mut self, instance_id: &'a str) -> Self {
        self.instance = Some(instance_id).filter(|id| !id.is_empty());
        self
    }

    /// The task concerned.
    #[must_use]
    pub fn task(mut self, task_id: &'a str) -> Self {
        self.task = Some(task_id);
        self
    }

    /// The worker concerned.
    #[must_use]
    pub fn worker(mut self, worker_id: &'a str) -> Self {
        self.worker = Some(worker_id);
        self
    }

    /// The part of the operation that failed, e.g. `"write result"`.
    #[must_use]
    pub fn step(mut self, step: &'a str) -> Self {
        self.step = Some(step);
        self
    }

    /// The operation's name.
    #[must_use]
    pub const fn operation(&self) -> &'a str {
        self.operation
    }

    /// `BackendError::Backend` with this context and `detail`.
    #[must_use]
    pub fn backend(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Backend(format!("{self}: {detail}"))
    }

    /// `BackendError::Serialization` with this context and `detail`.
    #[must_use]
    pub fn serialization(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Serialization(format!("{self}: {detail}"))
    }
}

impl fmt::Display for ErrorContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.system, self.operation)?;
        let mut separator = " (";
        for (name, value) in
            [("instance", self.instance), ("task", self.task), ("worker", self.worker)]
        {
            if let Some(value) = value {
                write!(f, "{separator}{name} {value:?}")?;
                separator = ", ";
            }
        }
        if separator == ", " {
            f.write_str(")")?;
        }
        if let Some(step) = self.step {
            write!(f, " during {step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_system_operation_ids_and_step() {
        let context = ErrorContext::new("Redis", "claim_task").instance("i").task("t");
        assert_eq!(context.to_string(), "Redis claim_task (instance \"i\", task \"t\")");
        let bare = ErrorContext::new("PostgreSQL", "list_snapshots");
        assert_eq!(bare.to_string(), "PostgreSQL list_snapshots");
        let stepped = ErrorContext::new("SQLite", "save_task_result").instance("a b").step("write");
        assert_eq!(stepped.to_string(), "SQLite save_task_result (instance \"a b\") during write");
        assert_eq!(ErrorContext::new("SQLite", "x").instance("").to_string(), "SQLite x");
        let error = stepped.backend("disk full");
        assert!(
            matches!(error, BackendError::Backend(m) if m.ends_with("during write: disk full"))
        );
    }
}
