//! GNU tar's `--listed-incremental`: the snapshot file, the dumpdir, and the rules that decide
//! what a level dumps.

pub mod dump;
pub mod dumpdir;
pub mod scan;
pub mod snapshot;
