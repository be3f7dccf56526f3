//! freezer: a backup and restore agent, successor of OpenStack freezer-agent.
//!
//! A backup is one stream, built by stages that each wrap the next:
//!
//! ```text
//! walk (incremental::scan) ─► tar (incremental::dump, tar) ─► compress ─► segment ─► storage
//! ```
//!
//! A restore reads it back the other way and replays each level's dumpdirs inside an
//! [`extract::Target`] that refuses anything leaving the restore directory. Backups live in
//! freezer-agent 19's layout ([`catalog`]), so each tool lists and restores the other's backups.

pub mod backup;
pub mod catalog;
pub mod checksum;
pub mod compress;
pub mod crypt;
pub mod error;
pub mod exclude;
pub mod extract;
pub mod freeze;
pub mod incremental;
pub mod interrupt;
pub mod limit;
pub mod lock;
pub mod mode;
pub mod pipe;
pub mod priority;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod segment;
pub mod storage;
pub mod tar;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
