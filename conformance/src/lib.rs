#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite: a failed unwrap is a failed case
//! The behavioural test suite of sayiir-persistence backends (`CONTRACT.md` made executable).
//!
//! Implement [`Harness`] for your backend in its `tests/` folder and add one line:
//!
//! ```ignore
//! sayiir_persistence_conformance::conformance_suite!(MyHarness);
//! ```
//!
//! That expands into one test per case, named `<group>::<case>`, each on a fresh backend on a
//! multi-threaded runtime. To run only some groups, name them:
//! `conformance_suite!(MyHarness; snapshots, signals, claims);`. The groups are
//! [`snapshots`], [`signals`], [`events`], [`claims`], [`find`], [`task_results`],
//! [`bad_input`] and [`concurrency`]. Every case is also a public async function that takes
//! an `Arc<H>`, so one can be run by hand with [`run_case`] while debugging.
//!
//! Network backends find their server with [`servers::postgres_url`] and
//! [`servers::redis_url`].

mod harness;

pub mod fixtures;
pub mod servers;

pub mod bad_input;
pub mod claims;
pub mod concurrency;
pub mod events;
pub mod find;
pub mod signals;
pub mod snapshots;
pub mod task_results;

pub use harness::{FullBackend, Harness, run_case};

#[doc(hidden)]
pub mod __private {
    pub use crate::harness::run_case;
}

/// Expands into one `#[test]` per conformance case for a [`Harness`] type.
///
/// `conformance_suite!(H)` runs every group; `conformance_suite!(H; group, ...)` only those
/// named. Each test builds a multi-threaded tokio runtime, as `#[tokio::test(flavor =
/// "multi_thread")]` would, without requiring the caller to depend on tokio.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(
            $harness;
            snapshots, signals, events, claims, find, task_results, bad_input, concurrency
        );
    };
    ($harness:ty; $($group:ident),+ $(,)?) => {
        $( $crate::__conformance_group!($group, $harness); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($harness:ty, $group:ident, [$($case:ident),* $(,)?]) => {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[test]
            fn $case() {
                $crate::__private::run_case::<$harness, _, _>($crate::$group::$case::<$harness>);
            }
        )*
    };
}

/// The cases of each group. `every_case_is_listed` (below) checks that this list and the
/// public functions of each group module agree.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_group {
    (snapshots, $h:ty) => { mod snapshots { $crate::__conformance_tests!($h, snapshots, [
        round_trip_fully_populated,
    ]); } };
    (signals, $h:ty) => { mod signals { $crate::__conformance_tests!($h, signals, [
    ]); } };
    (events, $h:ty) => { mod events { $crate::__conformance_tests!($h, events, [
    ]); } };
    (claims, $h:ty) => { mod claims { $crate::__conformance_tests!($h, claims, [
    ]); } };
    (find, $h:ty) => { mod find { $crate::__conformance_tests!($h, find, [
    ]); } };
    (task_results, $h:ty) => { mod task_results { $crate::__conformance_tests!($h, task_results, [
    ]); } };
    (bad_input, $h:ty) => { mod bad_input { $crate::__conformance_tests!($h, bad_input, [
    ]); } };
    (concurrency, $h:ty) => { mod concurrency { $crate::__conformance_tests!($h, concurrency, [
    ]); } };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of a group module is listed in `__conformance_group`, and every
    /// listed name exists (the compiler checks the second half when a backend expands it).
    #[test]
    fn every_case_is_listed() {
        let lib = include_str!("lib.rs");
        let groups = [
            ("snapshots", include_str!("snapshots.rs")),
            ("signals", include_str!("signals.rs")),
            ("events", include_str!("events.rs")),
            ("claims", include_str!("claims.rs")),
            ("find", include_str!("find.rs")),
            ("task_results", include_str!("task_results.rs")),
            ("bad_input", include_str!("bad_input.rs")),
            ("concurrency", include_str!("concurrency.rs")),
        ];
        let mut total = 0;
        for (group, source) in groups {
            let start = lib
                .find(&format!("({group}, $h:ty)"))
                .unwrap_or_else(|| panic!("group {group} missing from the macro"));
            let listed = &lib[start..start + lib[start..].find("]);").unwrap()];
            for line in source.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else { continue };
                let name = rest.split(['<', '(']).next().unwrap();
                assert!(
                    listed.contains(&format!("{name},")),
                    "case {group}::{name} is not listed in __conformance_group"
                );
                total += 1;
            }
        }
        assert!(total > 0);
    }
}
