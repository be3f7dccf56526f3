//! The 512-byte header blocks, laid out field by field as GNU tar 1.34 writes them in its
//! default (`gnu`) format with `--listed-incremental`: magic `"ustar  \0"`, numbers in octal
//! when they fit and in GNU base-256 otherwise, atime/ctime filled, old-GNU sparse maps.

use std::io;

use super::{Header, Kind};

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// Longest name or link target stored in the header itself; longer ones get a
/// `././@LongLink` member first (GNU tar: `NAME_FIELD_SIZE < strlen`).
pub(crate) const NAME_FIELD: usize = 100;

/// Sparse entries held by the main header and by each extension block.
pub(crate) const SPARSE_IN_HEADER: usize = 4;
pub(crate) const SPARSE_IN_EXT: usize = 21;

// Field offsets of the GNU header (struct posix_header + struct oldgnu_header).
const NAME: usize = 0;
const MODE: (usize, usize) = (100, 8);
const UID: (usize, usize) = (108, 8);
const GID: (usize, usize) = (116, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME: (usize, usize) = (136, 12);
const CHKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: usize = 157;
const MAGIC: usize = 257;
const UNAME: (usize, usize) = (265, 32);
const GNAME: (usize, usize) = (297, 32);
const DEVMAJOR: (usize, usize) = (329, 8);
const DEVMINOR: (usize, usize) = (337, 8);
const ATIME: (usize, usize) = (345, 12);
const CTIME: (usize, usize) = (357, 12);
const SPARSE: usize = 386;
const IS_EXTENDED: usize = 482;
const REALSIZE: (usize, usize) = (483, 12);
/// In an extension block the flag follows the 21 entries.
const EXT_IS_EXTENDED: usize = 504;

/// GNU's magic and version together ("ustar " + " \0").
const GNU_MAGIC: &[u8; 8] = b"ustar  \0";

/// A header block being built.
pub(crate) type Block = [u8; BLOCK];

/// Write `value` in `field` like GNU's `to_chars`: octal with `len-1` digits and a NUL when it
/// fits, else base-256 (first byte 0x80, big-endian value in the rest).
fn put_u64(
    block: &mut Block,
    (off, len): (usize, usize),
    value: u64,
    what: &str,
) -> io::Result<()> {
    let field = &mut block[off..off + len];
    let digits = len - 1;
    if digits * 3 >= 64 || value >> (digits * 3) == 0 {
        let mut v = value;
        for b in field[..digits].iter_mut().rev() {
            *b = b'0' + (v & 7) as u8;
            v >>= 3;
        }
        field[digits] = 0;
        return Ok(());
    }
    let bytes = value.to_be_bytes();
    let room = len - 1;
    let lead = bytes.len().saturating_sub(room);
    if bytes[..lead].iter().any(|&b| b != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {value} is too large for a GNU tar header"),
        ));
    }
    field.fill(0);
    field[0] = 0x80;
    field[len - (bytes.len() - lead)..].copy_from_slice(&bytes[lead..]);
    Ok(())
}

/// A time field: octal when non-negative and small enough, else base-256 two's complement
/// (first byte 0xff for negative values), as GNU tar 1.34 writes pre-1970 times.
fn put_time(block: &mut Block, field: (usize, usize), t: i64) {
    if t >= 0 {
        // 12-byte fields hold any u64 in base-256; this cannot fail.
        let _ = put_u64(block, field, t as u64, "time");
        return;
    }
    let (off, len) = field;
    let f = &mut block[off..off + len];
    f.fill(0xff);
    f[len - 8..].copy_from_slice(&t.to_be_bytes());
}

/// Copy `s` into a fixed field, truncated to the field (no NUL when it fills it), as GNU's
/// `tar_copy_str` does for names and link targets.
fn put_bytes(block: &mut Block, off: usize, len: usize, s: &[u8]) {
    let n = s.len().min(len);
    block[off..off + n].copy_from_slice(&s[..n]);
}

/// User and group names keep at least one NUL (GNU's `string_to_chars`).
fn put_name_field(block: &mut Block, (off, len): (usize, usize), s: &[u8]) {
    put_bytes(block, off, len - 1, s);
}

/// Fill the checksum: the unsigned sum of all bytes with the field taken as spaces, written
/// as six octal digits, NUL, space.
pub(crate) fn set_checksum(block: &mut Block) {
    let (off, len) = CHKSUM;
    block[off..off + len].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let mut v = sum;
    for b in block[off..off + 6].iter_mut().rev() {
        *b = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    block[off + 6] = 0;
}

/// The header of a `././@LongLink` member (`L` long name, `K` long link target) whose data is
/// `len` bytes (the name and its NUL). Matches GNU's `write_gnu_long_link`: mode 0644,
/// uid/gid 0, owner "root", mtime 0.
pub(crate) fn long_link(typeflag: u8, len: u64) -> io::Result<Block> {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b, NAME, NAME_FIELD, b"././@LongLink");
    put_u64(&mut b, MODE, 0o644, "mode")?;
    put_u64(&mut b, UID, 0, "uid")?;
    put_u64(&mut b, GID, 0, "gid")?;
    put_u64(&mut b, SIZE, len, "long name length")?;
    put_u64(&mut b, MTIME, 0, "mtime")?;
    b[TYPEFLAG] = typeflag;
    b[MAGIC..MAGIC + 8].copy_from_slice(GNU_MAGIC);
    put_name_field(&mut b, UNAME, b"root");
    put_name_field(&mut b, GNAME, b"root");
    set_checksum(&mut b);
    Ok(b)
}

/// The type flag of a member kind.
pub(crate) fn typeflag(kind: &Kind) -> u8 {
    match kind {
        Kind::File { .. } => b'0',
        Kind::Sparse { .. } => b'S',
        Kind::Dir => b'5',
        Kind::Dumpdir { .. } => b'D',
        Kind::Symlink { .. } => b'2',
        Kind::HardLink { .. } => b'1',
        Kind::Char { .. } => b'3',
        Kind::Block { .. } => b'4',
        Kind::Fifo => b'6',
    }
}

/// The main header of a member, checksum not yet set (sparse entries may still be added).
/// `size` is the number of data bytes stored after it.
pub(crate) fn member(h: &Header, kind: &Kind, size: u64) -> io::Result<Block> {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b, NAME, NAME_FIELD, h.name);
    put_u64(&mut b, MODE, u64::from(h.mode & 0o7777), "mode")?;
    put_u64(&mut b, UID, h.uid, "uid")?;
    put_u64(&mut b, GID, h.gid, "gid")?;
    put_u64(&mut b, SIZE, size, "size")?;
    put_time(&mut b, MTIME, h.mtime);
    b[TYPEFLAG] = typeflag(kind);
    match kind {
        Kind::Symlink { target } | Kind::HardLink { target } => {
            put_bytes(&mut b, LINKNAME, NAME_FIELD, target)
        }
        Kind::Char { major, minor } | Kind::Block { major, minor } => {
            put_u64(&mut b, DEVMAJOR, u64::from(*major), "device major")?;
            put_u64(&mut b, DEVMINOR, u64::from(*minor), "device minor")?;
        }
        _ => {}
    }
    b[MAGIC..MAGIC + 8].copy_from_slice(GNU_MAGIC);
    put_name_field(&mut b, UNAME, h.uname);
    put_name_field(&mut b, GNAME, h.gname);
    put_time(&mut b, ATIME, h.atime);
    put_time(&mut b, CTIME, h.ctime);
    Ok(b)
}

/// Put one (offset, numbytes) sparse entry at `off`.
fn put_sparse_entry(block: &mut Block, off: usize, (offset, len): (u64, u64)) -> io::Result<()> {
    put_u64(block, (off, 12), offset, "sparse offset")?;
    put_u64(block, (off + 12, 12), len, "sparse length")
}

/// Add the old-GNU sparse fields to a main header: `realsize`, the first four entries of
/// `map` and the `isextended` flag when more follow.
pub(crate) fn set_sparse(block: &mut Block, realsize: u64, map: &[(u64, u64)]) -> io::Result<()> {
    put_u64(block, REALSIZE, realsize, "sparse file size")?;
    for (i, &e) in map.iter().take(SPARSE_IN_HEADER).enumerate() {
        put_sparse_entry(block, SPARSE + i * 24, e)?;
    }
    block[IS_EXTENDED] = u8::from(map.len() > SPARSE_IN_HEADER);
    Ok(())
}

/// One sparse extension block holding `entries` (at most 21); `more` sets its
/// `isextended` flag. Extension blocks carry no checksum.
pub(crate) fn sparse_ext(entries: &[(u64, u64)], more: bool) -> io::Result<Block> {
    let mut b = [0u8; BLOCK];
    for (i, &e) in entries.iter().enumerate() {
        put_sparse_entry(&mut b, i * 24, e)?;
    }
    b[EXT_IS_EXTENDED] = u8::from(more);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: u64, len: usize) -> Vec<u8> {
        let mut b = [0u8; BLOCK];
        put_u64(&mut b, (0, len), v, "x").unwrap();
        b[..len].to_vec()
    }

    #[test]
    fn octal_when_it_fits() {
        assert_eq!(field(0o755, 8), b"0000755\0");
        assert_eq!(field(0o7777777, 8), b"7777777\0");
        assert_eq!(field(6, 12), b"00000000006\0");
        assert_eq!(field((8 << 30) - 1, 12), b"77777777777\0");
    }

    #[test]
    fn base256_when_too_big() {
        // uid 3000000 as GNU tar 1.34 writes it.
        assert_eq!(field(3_000_000, 8), [0x80, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0]);
        assert_eq!(field(4_000_000_000, 8), [0x80, 0, 0, 0, 0xee, 0x6b, 0x28, 0]);
        let nine_gib = field(9 << 30, 12);
        assert_eq!(nine_gib, [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x40, 0, 0, 0]);
        assert_eq!(field(u64::MAX, 12)[..5], [0x80, 0, 0, 0, 0xff]);
        let mut b = [0u8; BLOCK];
        assert!(put_u64(&mut b, (0, 8), 1 << 56, "uid").is_err());
    }

    #[test]
    fn negative_time_is_twos_complement() {
        let mut b = [0u8; BLOCK];
        put_time(&mut b, (0, 12), -2_147_483_648);
        assert_eq!(b[..12], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0]);
        put_time(&mut b, (0, 12), 1_700_000_000);
        assert_eq!(&b[..12], b"14524770400\0");
    }

    #[test]
    fn checksum_format() {
        let mut b = [0u8; BLOCK];
        set_checksum(&mut b);
        // 8 spaces = 256 = 0o400.
        assert_eq!(&b[148..156], b"000400\0 ");
    }
}
