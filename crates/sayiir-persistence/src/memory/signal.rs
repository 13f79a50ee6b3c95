//! `SignalStore` for the in-memory backend: signals, events, and atomic composites.

use crate::validation::{SignalDecision, not_paused_error, signal_decision};
use crate::{BackendError, SignalStore};
use bytes::Bytes;
use sayiir_core::snapshot::{PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot};

use super::InMemoryBackend;
use super::state::{Signals, State};
use crate::operation::Call;

fn slot(signals: &mut Signals, kind: SignalKind) -> &mut Option<SignalRequest> {
    match kind {
        SignalKind::Cancel => &mut signals.cancel,
        SignalKind::Pause => &mut signals.pause,
    }
}

/// Takes the pending request of `kind` if the snapshot is in progress, leaving it otherwise.
///
/// `Ok(None)`: nothing pending, or not in progress (the request stays pending).
fn take_request_for_in_progress(
    state: &mut State,
    instance_id: &str,
    kind: SignalKind,
) -> Result<Option<SignalRequest>, BackendError> {
    let pending = state.signals.get_mut(instance_id).is_some_and(|s| slot(s, kind).is_some());
    if !pending {
        return Ok(None);
    }
    let snapshot = state
        .workflows
        .get(instance_id)
        .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?
        .snapshot(instance_id)?;
    if !snapshot.state.is_in_progress() {
        return Ok(None);
    }
    Ok(state.signals.get_mut(instance_id).and_then(|s| slot(s, kind).take()))
}

impl SignalStore for InMemoryBackend {
    async fn store_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        let checked = request.clone();
        self.calls()
            .run(Call::StoreSignal { instance_id, request: &checked }, async {
                let mut state = self.lock()?;
                let status = match state.workflows.get(instance_id) {
                    None => return Err(BackendError::NotFound(instance_id.to_string())),
                    Some(workflow) => {
                        workflow.snapshot(instance_id).map_or("", |s| s.state.as_ref())
                    }
                };
                if signal_decision(status, kind)? == SignalDecision::Store {
                    *slot(state.signals.entry(instance_id.to_string()).or_default(), kind) =
                        Some(request);
                    // Out of the indexes while the request is pending.
                    state.unindex(instance_id);
                }
                Ok(())
            })
            .await
    }

    async fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        self.calls()
            .run(Call::GetSignal(instance_id), async {
                let mut state = self.lock()?;
                Ok(state.signals.get_mut(instance_id).and_then(|s| slot(s, kind).clone()))
            })
            .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        self.calls()
            .run(Call::ClearSignal(instance_id), async {
                let mut state = self.lock()?;
                if let Some(signals) = state.signals.get_mut(instance_id) {
                    *slot(signals, kind) = None;
                    if !signals.any() {
                        state.signals.remove(instance_id);
                        // Back in the indexes its schedule calls for.
                        state.unindex(instance_id);
                        state.index(instance_id);
                    }
                }
                Ok(())
            })
            .await
    }

    async fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SendEvent { instance_id, signal_name }, async {
                let mut state = self.lock()?;
                state
                    .events
                    .entry(instance_id.to_string())
                    .or_default()
                    .entry(signal_name.to_string())
                    .or_default()
                    .push_back(payload);
                // Wake the workflow if it waits for this signal.
                state.unindex(instance_id);
                state.index(instance_id);
                Ok(())
            })
            .await
    }

    async fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        self.calls()
            .run(Call::ConsumeEvent { instance_id, signal_name }, async {
                let mut state = self.lock()?;
                let event = state.pop_event(instance_id, signal_name);
                state.unindex(instance_id);
                state.index(instance_id);
                Ok(event)
            })
            .await
    }

    async fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        self.calls()
            .run(Call::CheckAndCancel { instance_id, interrupted_at_task }, async {
                let mut state = self.lock()?;
                let Some(request) =
                    take_request_for_in_progress(&mut state, instance_id, SignalKind::Cancel)?
                else {
                    return Ok(false);
                };
                state.modify(instance_id, |snapshot| {
                    snapshot.mark_cancelled(
                        request.reason,
                        request.requested_by,
                        interrupted_at_task.map(String::from),
                    );
                });
                Ok(true)
            })
            .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        self.calls()
            .run(Call::CheckAndPause(instance_id), async {
                let mut state = self.lock()?;
                let Some(request) =
                    take_request_for_in_progress(&mut state, instance_id, SignalKind::Pause)?
                else {
                    return Ok(false);
                };
                state.modify(instance_id, |snapshot| {
                    snapshot.mark_paused(&PauseRequest::from(request));
                });
                Ok(true)
            })
            .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::Unpause(instance_id), async {
                let mut state = self.lock()?;
                let snapshot = state
                    .workflows
                    .get(instance_id)
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?
                    .snapshot(instance_id)?;
                if !snapshot.state.is_paused() {
                    return Err(not_paused_error(&snapshot.state));
                }
                // § Unpause drops a pending pause: a stale pause request must not pause the
                // workflow again right away.
                if let Some(signals) = state.signals.get_mut(instance_id) {
                    signals.pause = None;
                }
                state
                    .modify(instance_id, |snapshot| {
                        snapshot.mark_unpaused();
                        snapshot.clone()
                    })
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))
            })
            .await
    }
}

impl State {
    /// Removes and returns the oldest event of a queue, dropping the queue when empty.
    pub(crate) fn pop_event(&mut self, instance_id: &str, signal_name: &str) -> Option<Bytes> {
        let queues = self.events.get_mut(instance_id)?;
        let queue = queues.get_mut(signal_name)?;
        let event = queue.pop_front();
        if queue.is_empty() {
            queues.remove(signal_name);
            if queues.is_empty() {
                self.events.remove(instance_id);
            }
        }
        event
    }
}
