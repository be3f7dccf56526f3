//! GNU tar stream writer.
//!
//! Writes archives that GNU tar 1.34 extracts exactly, in the format it writes itself with
//! `--listed-incremental` (`tar -cf x.tar -g snap dir`): old-GNU headers (magic
//! `"ustar  \0"`), `././@LongLink` members for names and link targets over 100 bytes,
//! octal numbers or GNU base-256 when they do not fit (sizes ≥ 8 GiB, large ids, pre-1970
//! times), atime/ctime in every header, old-GNU sparse members (`S`) and incremental
//! directory members (`D`). The caller decides what goes in; this module only encodes.
//! Reading archives is left to the `tar` crate.

mod header;
mod layout;
pub mod sparse;
mod writer;

pub use sparse::{SparseReader, sparse_map};
pub use writer::{Appended, TarWriter};

/// Metadata of one archive member.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// Archive name, raw bytes (may be non-UTF-8), e.g. `b"./a/f"`; directories end with `/`.
    pub name: &'a [u8],
    /// Permission bits including setuid/setgid/sticky; file-type bits are ignored.
    pub mode: u32,
    /// Owner id (ids ≥ 2^21 are written in base-256; ≥ 2^56 are refused).
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name; may be empty; truncated to 31 bytes.
    pub uname: &'a [u8],
    /// Group name; may be empty; truncated to 31 bytes.
    pub gname: &'a [u8],
    /// Modification time, seconds since the epoch (negative allowed).
    pub mtime: i64,
    /// Access time, seconds.
    pub atime: i64,
    /// Status change time, seconds.
    pub ctime: i64,
}

/// What a member is, with what its header needs beyond [`Header`].
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// A regular file (`0`); exactly `size` bytes of data follow.
    File {
        /// File size in bytes.
        size: u64,
    },
    /// An old-GNU sparse file (`S`): `size` is the real file size, `map` the data regions
    /// as (offset, length), sorted; the data is the regions concatenated. Regions whose
    /// length is not a multiple of 512 are lengthened with zeros (GNU tar's reader needs
    /// it), and a final `(size, 0)` entry is added, as GNU tar always writes one.
    Sparse {
        /// Real (apparent) file size.
        size: u64,
        /// Data regions.
        map: &'a [(u64, u64)],
    },
    /// A plain directory (`5`).
    Dir,
    /// A GNU incremental directory (`D`); its data is the dumpdir bytes.
    Dumpdir {
        /// The encoded dumpdir, see [`crate::incremental::dumpdir`].
        dumpdir: &'a [u8],
    },
    /// A symbolic link (`2`).
    Symlink {
        /// Link target, raw bytes.
        target: &'a [u8],
    },
    /// A hard link (`1`) to a member stored earlier.
    HardLink {
        /// Archive name of the first link.
        target: &'a [u8],
    },
    /// A character device (`3`).
    Char {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device (`4`).
    Block {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe (`6`).
    Fifo,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gnu;
