//! The library half of xtask: what the end-to-end harness (`tests/`, `faultline-e2e`) shares
//! with `cargo xtask`, so both start the same control plane. Only std.

pub mod cluster;
