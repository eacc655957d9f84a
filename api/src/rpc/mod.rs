//! The JSON-RPC 2.0 wire types of the node agents (DESIGN.md §4–§5), defined once: the
//! controller and the daemon (clients) and the daemon and the sidecar (servers) share these, so a
//! field renamed on one side cannot silently stop matching on the other.
//!
//! Params are by name. Every params struct denies unknown fields: a misspelled field is an error
//! naming it, never a parameter silently left at its default (which, for a fault, could widen
//! it).

#[cfg(feature = "crd")]
pub mod daemon;
pub mod sidecar;
