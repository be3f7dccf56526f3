//! freezer: a backup and restore agent, successor of OpenStack freezer-agent.
//!
//! A backup is one stream, built by stages that each wrap the next:
//!
//! ```text
//! walk ─► tar (GNU, listed-incremental) ─► compress ─► segment ─► storage
//! ```
//!
//! A restore reads it back the other way and replays each level's dumpdirs inside a
//! [`extract::Target`] that refuses anything leaving the restore directory. Backups live
//! in freezer-agent 19's layout, so each tool lists and restores the other's backups.

pub mod compress;
pub mod error;
pub mod incremental;
pub mod segment;
pub mod storage;

pub use error::{Error, ErrorKind, Result};
