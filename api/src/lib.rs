//! faultline-api
pub mod duration;
pub mod iorule;
pub mod validate;
