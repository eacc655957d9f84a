//! Pure conversions from admitted specs to what the node agents execute.
//!
//! Each conversion validates first and returns the violations instead of guessing, so a caller
//! that skipped admission (the daemon, a test) still cannot execute a bad spec. Conversions are
//! total functions of the values validation parsed (`tc_values`, `StressChaosSpec::checked`):
//! no field is parsed twice, and no conversion falls back to a default of its own.

pub mod io;
pub mod network;
pub mod stress;
pub(crate) mod tc_values;
