//! Finding the data regions of a sparse file (as GNU tar `--sparse` does with
//! SEEK_DATA/SEEK_HOLE) and reading them back in order.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

/// The data regions `(offset, length)` of `file`, whose stat (as of opening) is `meta`,
/// ending with `(size, 0)` like GNU tar's map; `None` when the file has no holes (its allocated blocks
/// cover its size) or the file system cannot report them, so it is stored as a plain file.
///
/// Regions are clamped to the size in `meta` if the file grew since it was measured. The file offset is
/// restored before returning.
pub fn sparse_map(file: &File, meta: &Metadata) -> io::Result<Option<Vec<(u64, u64)>>> {
    let size = meta.len();
    // The caller's stat, not a new one: one system call less per file.
    if meta.blocks().saturating_mul(512) >= size {
        return Ok(None);
    }
    let saved = lseek(file, 0, Whence::SeekCur)?;
    let map = scan(file, size);
    lseek(file, saved, Whence::SeekSet)?;
    let Some(mut map) = map? else {
        return Ok(None);
    };
    // One region covering the whole file: a file system that reports no holes (GNU tar
    // checks the same), or a hole-free file with few blocks (compressed file systems).
    if map.first() == Some(&(0, size)) {
        return Ok(None);
    }
    map.push((size, 0));
    Ok(Some(map))
}

/// Data regions before the final `(size, 0)`; `None` when SEEK_DATA is not supported.
fn scan(file: &File, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut map = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let data = match lseek(file, to_off(offset)?, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(Errno::ENXIO) => break, // only a hole remains
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) if offset == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match lseek(file, to_off(data)?, Whence::SeekHole) {
            Ok(h) => (h as u64).min(size),
            // The file shrank under us: keep what we have, the writer pads the rest.
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if hole > data {
            map.push((data, hole - data));
        }
        offset = hole.max(data + 1);
    }
    Ok(Some(map))
}

fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

/// Reads the data regions of `map` from a file, one after the other, with positioned
/// reads (the file offset is not used). Ends early if the file has shrunk.
pub struct SparseReader<'a> {
    file: &'a File,
    map: &'a [(u64, u64)],
    region: usize,
    done: u64,
}

impl<'a> SparseReader<'a> {
    /// A reader over the regions of `map` in `file`.
    pub fn new(file: &'a File, map: &'a [(u64, u64)]) -> Self {
        SparseReader { file, map, region: 0, done: 0 }
    }
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(offset, len)) = self.map.get(self.region) {
            if self.done == len {
                self.region += 1;
                self.done = 0;
                continue;
            }
            let want = usize::try_from(len - self.done).unwrap_or(usize::MAX).min(buf.len());
            if want == 0 {
                return Ok(0);
            }
            let n = self.file.read_at(&mut buf[..want], offset + self.done)?;
            if n == 0 {
                self.region = self.map.len();
                return Ok(0);
            }
            self.done += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn map_of_file_with_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut f = File::create(&path).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(4 << 20).unwrap();
        let f = File::open(&path).unwrap();
        let map = sparse_map(&f, &f.metadata().unwrap()).unwrap().unwrap();
        assert_eq!(map.len(), 2, "{map:?}");
        let (off, len) = map[0];
        assert!(off <= 1 << 20 && off + len >= (1 << 20) + 6, "{map:?}");
        assert_eq!(map[1], (4 << 20, 0));

        let mut data = Vec::new();
        SparseReader::new(&f, &map).read_to_end(&mut data).unwrap();
        assert_eq!(data.len() as u64, len);
        let at = ((1 << 20) - off) as usize;
        assert_eq!(&data[at..at + 6], b"middle");
    }

    #[test]
    fn dense_file_has_no_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        std::fs::write(&path, vec![1u8; 100_000]).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(sparse_map(&f, &f.metadata().unwrap()).unwrap(), None);
    }

    #[test]
    fn all_hole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        File::create(&path).unwrap().set_len(1 << 20).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(sparse_map(&f, &f.metadata().unwrap()).unwrap(), Some(vec![(1 << 20, 0)]));
    }

    #[test]
    fn reader_stops_when_file_shrank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        std::fs::write(&path, b"0123456789").unwrap();
        let f = File::open(&path).unwrap();
        let map = [(2, 3), (8, 5)];
        let mut data = Vec::new();
        SparseReader::new(&f, &map).read_to_end(&mut data).unwrap();
        assert_eq!(data, b"23489");
    }
}
