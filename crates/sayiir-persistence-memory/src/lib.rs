#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

pub use sayiir_persistence::*;
