//! The catalog: where a backup's objects live (freezer-agent 19's layout), what its metadata
//! says, how backups form chains, which level the next backup gets, which chain a restore
//! replays and which chains a prune keeps. Pure logic over a listing; the only I/O is [`load`]
//! reading through a [`Storage`](crate::storage::Storage).

mod chain;
mod date;
mod layout;
mod meta;
mod policy;
mod retention;

pub(crate) use chain::ancestry;
pub use chain::{Backup, Catalog, Damaged, ids, load, load_catalog, parent_of, restore_chain};
pub use date::{format_local, parse_date};
pub use layout::{BackupId, ENGINE, Layout};
pub use meta::{BackupMeta, BackupStats, DatabaseMeta, FORMAT, SegmentMeta};
pub use policy::{LevelPolicy, Next, new_id, next_backup};
pub use retention::{Decision, RetentionPolicy, cutoff_from_days, decide};

#[cfg(test)]
mod testutil;
