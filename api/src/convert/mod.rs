//! Pure conversions from admitted specs to what the node agents execute.
//!
//! Each conversion validates first and returns the violations instead of guessing, so a caller
//! that skipped admission (the daemon, a test) still cannot execute a bad spec.

pub mod io;
pub mod network;
pub mod stress;
