//! How a sparse member's data is laid out in the archive.
//!
//! GNU tar's reader of old-GNU sparse members reads each region starting at a fresh 512-byte
//! block, so every region but the last must be a whole number of blocks long (its own
//! writer's regions always are: SEEK_DATA reports file-system blocks). We lengthen shorter
//! regions with zeros (bytes the caller's map says are holes anyway), merging regions that
//! then touch, and end the map with `(size, 0)` as GNU tar does: that entry is what makes
//! the extracted file `size` long when it ends in a hole.

use std::io;

/// One step of a sparse member's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Bytes from the caller's reader.
    Data(u64),
    /// Zeros added to fill a region to a block boundary.
    Zeros(u64),
}

/// A sparse map: data regions as (offset, length).
pub(crate) type Map = Vec<(u64, u64)>;

/// The map to write in the headers and the pieces of data, for a file of `size` bytes whose
/// data regions are `map`. Errors name the bad region.
pub(crate) fn sparse_layout(size: u64, map: &[(u64, u64)]) -> Result<(Map, Vec<Piece>), String> {
    let mut end = 0u64;
    for &(offset, len) in map {
        match offset.checked_add(len) {
            Some(stop) if offset >= end && stop <= size => end = stop,
            _ => {
                return Err(format!(
                    "sparse region ({offset}, {len}) overlaps the previous one or passes \
                     the file size {size}"
                ));
            }
        }
    }
    let mut out: Map = Vec::new();
    let mut pieces = Vec::new();
    for &(offset, len) in map.iter().filter(|r| r.1 > 0) {
        if let Some(last) = out.last_mut() {
            let data_end = last.0 + last.1;
            let padded_end = padded_end(*last, size);
            if offset <= padded_end {
                push(&mut pieces, Piece::Zeros(offset - data_end));
                push(&mut pieces, Piece::Data(len));
                last.1 = offset + len - last.0;
                continue;
            }
            push(&mut pieces, Piece::Zeros(padded_end - data_end));
            last.1 = padded_end - last.0;
        }
        out.push((offset, len));
        pieces.push(Piece::Data(len));
    }
    if let Some(last) = out.last_mut() {
        let padded_end = padded_end(*last, size);
        push(&mut pieces, Piece::Zeros(padded_end - (last.0 + last.1)));
        last.1 = padded_end - last.0;
    }
    out.push((size, 0));
    Ok((out, pieces))
}

/// Where a region ends once its length is rounded up to whole blocks (not past the file).
fn padded_end((offset, len): (u64, u64), size: u64) -> u64 {
    offset.saturating_add(len.next_multiple_of(512)).min(size)
}

fn push(pieces: &mut Vec<Piece>, p: Piece) {
    if p != Piece::Zeros(0) {
        pieces.push(p);
    }
}

/// Turn a layout error into the `InvalidInput` error of the member `name`.
pub(crate) fn invalid(name: &[u8], what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot archive {:?}: {what}", String::from_utf8_lossy(name)),
    )
}

#[cfg(test)]
mod tests {
    use super::Piece::{Data, Zeros};
    use super::*;

    #[test]
    fn gnu_maps_are_kept() {
        let map = [(4096, 4096), (65536, 8192), (1 << 20, 0)];
        let (out, pieces) = sparse_layout(1 << 20, &map).unwrap();
        assert_eq!(out, map);
        assert_eq!(pieces, [Data(4096), Data(8192)]);
        // The final (size, 0) is added when missing, even after data reaching the end.
        let (out, _) = sparse_layout(100, &[(0, 100)]).unwrap();
        assert_eq!(out, [(0, 100), (100, 0)]);
        let (out, pieces) = sparse_layout(1000, &[]).unwrap();
        assert_eq!((out, pieces), (vec![(1000, 0)], vec![]));
    }

    #[test]
    fn short_regions_are_padded_and_merged() {
        let map = [(10, 5), (300, 3), (600, 3), (5000, 7)];
        let (out, pieces) = sparse_layout(10_000, &map).unwrap();
        assert_eq!(out, [(10, 512), (600, 512), (5000, 512), (10_000, 0)]);
        let expect = [Data(5), Zeros(285), Data(3), Zeros(219), Data(3), Zeros(509)];
        assert_eq!(pieces[..6], expect);
        assert_eq!(pieces[6..], [Data(7), Zeros(505)]);
        // The last region stops at the file size.
        let (out, pieces) = sparse_layout(5010, &[(5000, 7)]).unwrap();
        assert_eq!((out, pieces), (vec![(5000, 10), (5010, 0)], vec![Data(7), Zeros(3)]));
    }

    #[test]
    fn bad_maps_are_refused() {
        for map in [&[(10, 5), (12, 1)][..], &[(0, 11)], &[(5, 1), (0, 1)], &[(u64::MAX, 2)]] {
            assert!(sparse_layout(10, map).is_err(), "{map:?}");
        }
    }
}
