//! Which mount holds a path, from `/proc/self/mountinfo`: the device to snapshot, its file
//! system type, and where the path sits inside it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The directory of the file system mounted there (`/` unless a bind or subvolume mount).
    pub root: PathBuf,
    pub fstype: String,
    /// The mounted device, e.g. `/dev/mapper/vg-data`.
    pub source: String,
    /// `major:minor` of the mounted device.
    pub dev: (u32, u32),
}

impl Mount {
    /// `path` (inside this mount) as a path relative to the file system's own root, so the
    /// same file can be found in a snapshot of the device mounted elsewhere.
    pub fn inside(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix(&self.point).unwrap_or(Path::new(""));
        let root = self.root.strip_prefix("/").unwrap_or(&self.root);
        root.join(rel)
    }
}

/// The mount holding `path` (absolute, symlinks resolved): the longest mount point that
/// contains it; of equal ones the last, which hides the others.
pub(crate) fn mount_of(path: &Path) -> Result<Mount> {
    let text = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read /proc/self/mountinfo", e))?;
    find(&parse(&text), path).ok_or_else(|| {
        Error::usage(format!("no mount holds {} (per /proc/self/mountinfo)", path.display()))
    })
}

fn find(mounts: &[Mount], path: &Path) -> Option<Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts.iter().filter(|m| path.starts_with(&m.point)) {
        if best.is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len()) {
            best = Some(m);
        }
    }
    best.cloned()
}

fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

// `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let sep = fields.iter().position(|f| *f == b"-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    let dev = std::str::from_utf8(fields[2]).ok()?;
    let (major, minor) = dev.split_once(':')?;
    Some(Mount {
        root: PathBuf::from(unescape(fields[3])),
        point: PathBuf::from(unescape(fields[4])),
        fstype: String::from_utf8_lossy(fields[sep + 1]).into_owned(),
        source: unescape(fields[sep + 2]).to_string_lossy().into_owned(),
        dev: (major.parse().ok()?, minor.parse().ok()?),
    })
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> OsString {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let oct = field.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (field[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
36 22 253:2 / /srv/db rw,relatime shared:9 - xfs /dev/mapper/vg0-db rw,attr2
37 22 253:3 /export /srv/with\\040space rw - ext4 /dev/mapper/vg0-data rw
38 36 0:45 / /srv/db/tmp rw - tmpfs tmpfs rw
39 22 253:4 / /srv/db rw shared:10 - ext4 /dev/mapper/vg0-db2 rw
";

    #[test]
    fn the_longest_and_last_mount_point_holds_a_path() {
        let m = parse(TABLE.as_bytes());
        assert_eq!(m.len(), 5);
        let db = find(&m, Path::new("/srv/db/mysql/ibdata1")).unwrap();
        assert_eq!(db.source, "/dev/mapper/vg0-db2", "mounted over the first /srv/db");
        assert_eq!(db.dev, (253, 4));
        assert_eq!(find(&m, Path::new("/srv/db/tmp/x")).unwrap().fstype, "tmpfs");
        assert_eq!(find(&m, Path::new("/srv/dbx")).unwrap().point, Path::new("/"));
        assert_eq!(find(&m, Path::new("/etc")).unwrap().source, "/dev/vda1");
    }

    #[test]
    fn escaped_names_and_bind_roots_map_into_the_file_system() {
        let m = parse(TABLE.as_bytes());
        let data = find(&m, Path::new("/srv/with space/a/b")).unwrap();
        assert_eq!(data.point, Path::new("/srv/with space"));
        assert_eq!(data.inside(Path::new("/srv/with space/a/b")), Path::new("export/a/b"));
        let root = find(&m, Path::new("/srv/db")).unwrap();
        assert_eq!(root.inside(Path::new("/srv/db")), Path::new(""));
    }

    #[test]
    fn this_machines_root_is_found() {
        let m = mount_of(Path::new("/")).unwrap();
        assert_eq!(m.point, Path::new("/"));
        assert!(!m.fstype.is_empty());
    }
}
