//! `crate::cache`: the HTTP cache filter's rules (`filters/src/http/cache/`: `policy`, `date`,
//! and `store` for the entry they read), which read headers an upstream and a client control.
//! Mounted as they are; what the fuzz target does not call is dead code here.
#![allow(dead_code)]

// Relative to this file's directory: filters/src/http/cache/.
#[path = "../../../../filters/src/http/cache/date.rs"]
pub mod date;
#[path = "../../../../filters/src/http/cache/policy.rs"]
pub mod policy;
#[path = "../../../../filters/src/http/cache/store.rs"]
pub mod store;
