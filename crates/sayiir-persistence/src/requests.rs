//! Ids for requests that must take effect once even when they are sent again.
//!
//! A destructive call whose answer can be lost (a timeout, a dropped connection) carries a
//! request id; the backend records the outcome under it, and a repeat with the same id gets
//! the recorded outcome instead of applying the call again (`consume_event` on the network
//! backends).

use std::sync::atomic::{AtomicU64, Ordering};

/// An id no other request of any process is likely to carry: the process id, the time in
/// nanoseconds and a per-process counter (e.g. `"4242-1764500000123456789-7"`). ASCII, no NUL.
#[must_use]
pub fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_hold_no_nul() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert!(!a.contains('\0') && a.is_ascii());
    }
}
