use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::*;
use crate::backup::{self, BackupOptions};
use crate::catalog::LevelPolicy;
use crate::incremental::scan::ScanOptions;
use crate::storage::local::LocalStorage;
use crate::storage::{Hooked, Op, StorageWrite};

const T0: i64 = 1_700_000_000;
const SEGMENT: usize = 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    storage: LocalStorage,
    layout: Layout,
    ids: Vec<BackupId>,
}

/// Pseudo-random bytes that do not compress away.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A chain of `levels` backups (level 0 first), each changing a file.
fn chain(compression: Compression, levels: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..4u64 {
        fs::write(src.join(format!("f{i}")), noise(i, 2000 + i as usize * 700)).unwrap();
    }
    fs::write(src.join("sub/small"), "small").unwrap();
    let root = dir.path().join("c");
    let storage = LocalStorage::new(&root).unwrap();
    let mut opts = BackupOptions {
        compression,
        segment_size: SEGMENT,
        policy: LevelPolicy { incremental: true, ..Default::default() },
        scan: ScanOptions { one_file_system: true, ..Default::default() },
        ..BackupOptions::for_test(src.clone())
    };
    let mut ids = Vec::new();
    for level in 0..levels {
        if level > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            fs::write(src.join(format!("new{level}")), noise(100 + level as u64, 3000)).unwrap();
        }
        opts.now = Some(T0 + level as i64 * 100);
        let report = backup::run(&storage, &opts, None).unwrap();
        assert_eq!(report.id.level, level);
        ids.push(report.id);
    }
    Fixture { _dir: dir, root, storage, layout: Layout::new("h", "b"), ids }
}

impl Fixture {
    fn verify(&self, opts: &VerifyOptions) -> VerifyReport {
        verify(&self.storage, std::slice::from_ref(&self.layout), opts).unwrap()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn data(&self, level: usize) -> PathBuf {
        self.path(&self.layout.data_key(&self.ids[level]))
    }

    fn meta(&self, level: usize) -> BackupMeta {
        let key = self.layout.metadata_key(&self.ids[level]);
        BackupMeta::from_json(&self.storage.get(&key).unwrap().unwrap(), &key).unwrap()
    }

    fn set_meta(&self, level: usize, meta: &BackupMeta) {
        let key = self.layout.metadata_key(&self.ids[level]);
        self.storage.put(&key, meta.to_json().unwrap().as_bytes()).unwrap();
    }

    /// "h_b/<L>_<T> (level L)" of a backup, as problems name it.
    fn name(&self, level: usize) -> String {
        format!("h_b/{} (level {level})", self.ids[level].name())
    }
}

fn flip(path: &Path, offset: u64) {
    let mut f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
}

fn truncate_by(path: &Path, n: u64) {
    let len = fs::metadata(path).unwrap().len();
    OpenOptions::new().write(true).open(path).unwrap().set_len(len - n).unwrap();
}

/// The problems of the `level`-th backup checked, one per line.
fn problems(report: &VerifyReport, level: usize) -> String {
    report.checked[level].problems.join("\n")
}

#[test]
fn intact_chain_passes() {
    let fx = chain(Compression::Zstd, 3);
    let report = fx.verify(&VerifyOptions::default());
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.checked.len(), 3);
    for (level, check) in report.checked.iter().enumerate() {
        assert_eq!(check.id, fx.ids[level]);
        assert_eq!(check.host_backup, "h_b");
        assert_eq!(Some(check.bytes), fx.meta(level).data_size);
        assert!(check.members.unwrap() > 0);
        assert!(check.notes.is_empty(), "{:?}", check.notes);
    }
}

#[test]
fn flipped_byte_names_backup_and_segment() {
    let fx = chain(Compression::None, 3);
    let segments = fx.meta(1).segments.unwrap().len();
    assert!(segments > 4, "{segments}");
    flip(&fx.data(1), 3 * SEGMENT as u64 + 100);
    let report = fx.verify(&VerifyOptions::default());
    assert!(!report.ok());
    assert!(report.checked[0].ok);
    let p = problems(&report, 1);
    assert!(p.contains(&fx.name(1)), "{p}");
    assert!(p.contains(&format!("segment 3 of {segments} ")), "{p}");
    assert!(p.contains("sha256 mismatch"), "{p}");
    // Level 2 is intact but cannot be restored without level 1.
    let p2 = problems(&report, 2);
    assert!(
        p2.contains(&format!(
            "level 1 ({}) is damaged: level 2 cannot be restored",
            fx.ids[1].name()
        )),
        "{p2}"
    );
    assert_eq!(report.damaged().count(), 2);
}

#[test]
fn truncated_data_names_the_first_missing_segment() {
    let fx = chain(Compression::None, 1);
    let segments = fx.meta(0).segments.unwrap();
    let last = segments.len() - 1;
    truncate_by(&fx.data(0), 10);
    let p = problems(&fx.verify(&VerifyOptions::default()), 0);
    assert!(p.contains(&fx.name(0)), "{p}");
    assert!(p.contains("data is 10 bytes shorter than recorded"), "{p}");
    assert!(p.contains(&format!("segment {last} of {} (numbered from 0) is incomplete", last + 1)));

    // Cut at a segment boundary: the next segment is missing, and the ones after it.
    let len = SEGMENT as u64 * 2;
    OpenOptions::new().write(true).open(fx.data(0)).unwrap().set_len(len).unwrap();
    let p = problems(&fx.verify(&VerifyOptions::default()), 0);
    assert!(p.contains(&format!("segment 2 of {} (numbered from 0) is missing", last + 1)), "{p}");
    assert!(p.contains("every one after it is missing"), "{p}");
}

#[test]
fn longer_data_is_reported() {
    let fx = chain(Compression::None, 1);
    let mut f = OpenOptions::new().append(true).open(fx.data(0)).unwrap();
    f.write_all(&[0u8; 7]).unwrap();
    let p = problems(&fx.verify(&VerifyOptions::default()), 0);
    assert!(p.contains("data is 7 bytes longer than recorded"), "{p}");
}

#[test]
fn missing_data_file() {
    let fx = chain(Compression::Zstd, 2);
    fs::remove_file(fx.data(0)).unwrap();
    let report = fx.verify(&VerifyOptions::default());
    let p = problems(&report, 0);
    assert!(p.contains(&format!("{}: data is missing", fx.name(0))), "{p}");
    assert!(problems(&report, 1).contains("level 0 (0_"), "{report:#?}");
}

#[test]
fn missing_level_reports_the_level_above() {
    let fx = chain(Compression::Zstd, 4);
    fs::remove_dir_all(fx.path(&fx.layout.metadata_dir(&fx.ids[1]))).unwrap();
    let report = fx.verify(&VerifyOptions::default());
    assert_eq!(report.checked.len(), 3);
    assert!(report.checked[0].ok);
    let l2 = &report.checked[1];
    assert_eq!(l2.id, fx.ids[2]);
    let p = l2.problems.join("\n");
    assert!(p.contains(&fx.name(2)), "{p}");
    assert!(p.contains("level 1 is missing: level 2 cannot be restored"), "{p}");
    let p3 = report.checked[2].problems.join("\n");
    assert!(p3.contains("cannot be restored, so neither can level 3"), "{p3}");
    // The newest chain selected alone reports the same.
    let newest = fx.verify(&VerifyOptions { select: Select::Newest, ..Default::default() });
    let names: Vec<String> = newest.checked.iter().map(|c| c.id.name()).collect();
    assert_eq!(names, [fx.ids[2].name(), fx.ids[3].name()]);
    assert!(newest.checked[0].problems.join("\n").contains("level 1 is missing"));
}

#[test]
fn select_picks_the_restore_chain() {
    let fx = chain(Compression::Zstd, 3);
    let at = fx.verify(&VerifyOptions { select: Select::At(T0 + 150), ..Default::default() });
    let ids: Vec<BackupId> = at.checked.iter().map(|c| c.id).collect();
    assert_eq!(ids, fx.ids[..2]);
    let err = verify(
        &fx.storage,
        std::slice::from_ref(&fx.layout),
        &VerifyOptions { select: Select::At(T0 - 1), ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("h_b"), "{err}");
}

/// freezer-agent's form: three keys, no hashes.
fn as_agent(fx: &Fixture, level: usize) {
    fx.set_meta(level, &BackupMeta::new(&fx.meta(level).compression, false));
}

#[test]
fn agent_backup_is_checked_by_its_content() {
    let fx = chain(Compression::Gzip, 1);
    as_agent(&fx, 0);
    let report = fx.verify(&VerifyOptions::default());
    assert!(report.ok(), "{report:#?}");
    assert!(report.checked[0].members.unwrap() > 0);
    assert!(report.checked[0].notes.join("").contains("no hashes"));

    let len = fs::metadata(fx.data(0)).unwrap().len();
    flip(&fx.data(0), len / 2);
    let report = fx.verify(&VerifyOptions::default());
    let p = problems(&report, 0);
    assert!(p.contains(&fx.name(0)) && p.contains("the content is damaged"), "{p}");
    assert!(p.contains("gzip"), "{p}");
}

#[test]
fn agent_chain_without_parents_restores_by_time() {
    let fx = chain(Compression::Gzip, 3);
    for level in 0..3 {
        as_agent(&fx, level);
    }
    assert!(fx.verify(&VerifyOptions::default()).ok());
}

#[test]
fn encrypted_without_a_key_gets_hash_checks_only() {
    let fx = chain(Compression::Zstd, 1);
    let mut meta = fx.meta(0);
    meta.encryption = true;
    fx.set_meta(0, &meta);
    let report = fx.verify(&VerifyOptions::default());
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.checked[0].members, None);
    assert!(report.checked[0].notes.join("").contains("content was not read"));

    // The hook decrypts (here: passes through) and the content is read.
    let pass: Box<Decrypt> = Box::new(|meta: &BackupMeta, r| {
        assert!(meta.encryption);
        Ok(r)
    });
    let report = fx.verify(&VerifyOptions { decrypt: Some(pass), ..Default::default() });
    assert!(report.ok() && report.checked[0].members.unwrap() > 0, "{report:#?}");

    let wrong: Box<Decrypt> =
        Box::new(|_: &BackupMeta, _| Err(Error::usage("the passphrase does not decrypt it")));
    let report = fx.verify(&VerifyOptions { decrypt: Some(wrong), ..Default::default() });
    assert!(problems(&report, 0).contains("cannot be decrypted: the passphrase"), "{report:#?}");
    // Hashes are still checked without the content.
    assert_eq!(Some(report.checked[0].bytes), meta.data_size);

    flip(&fx.data(0), 5);
    let report = fx.verify(&VerifyOptions::default());
    assert!(problems(&report, 0).contains("segment 0 of"), "{report:#?}");
}

#[test]
fn bad_metadata_and_engine_metadata_are_that_backups_problems() {
    let fx = chain(Compression::Zstd, 2);
    fs::write(fx.path(&fx.layout.metadata_key(&fx.ids[0])), "not json").unwrap();
    let em = fx.path(&fx.layout.engine_metadata_key(&fx.ids[1]));
    let mut snapshot = fs::read(&em).unwrap();
    snapshot.push(b'x');
    fs::write(&em, snapshot).unwrap();
    let report = fx.verify(&VerifyOptions::default());
    assert_eq!(report.checked.len(), 2);
    let p0 = problems(&report, 0);
    assert!(p0.contains(&fx.name(0)) && p0.contains("is not valid"), "{p0}");
    let p1 = problems(&report, 1);
    assert!(p1.contains("engine_metadata sha256 mismatch"), "{p1}");
    assert!(p1.contains("level 0 (0_"), "{p1}");
}

#[test]
fn storage_errors_are_problems_of_the_backup() {
    let fx = chain(Compression::Zstd, 2);
    // Reading any segment but the first fails, as a connection reset would.
    let hook = |op: Op, _: &str| match op {
        Op::ReadSegment(offset) if offset > 0 => Err(Error::storage("connection reset by peer")),
        _ => Ok(()),
    };
    let flaky = Hooked { inner: fx.storage.clone(), hook: Box::new(hook) };
    let report =
        verify(&flaky, std::slice::from_ref(&fx.layout), &VerifyOptions::default()).unwrap();
    assert_eq!(report.checked.len(), 2);
    let p = problems(&report, 0);
    assert!(p.contains(&format!("reading the data failed after {SEGMENT} bytes")), "{p}");
    assert!(p.contains("connection reset by peer"), "{p}");
    assert!(!p.contains("content is damaged"), "{p}");
}

#[test]
fn checker_edge_cases() {
    use sha2::{Digest, Sha256};
    let sha = |d: &[u8]| hex::encode(Sha256::digest(d));
    // `data` as stored: cut at the recorded segment sizes, the last segment taking the rest.
    let run = |data: &[u8], meta: &BackupMeta| {
        let mut parts = std::collections::VecDeque::new();
        let mut rest = data;
        let sizes: Vec<u64> = meta.segments.iter().flatten().map(|s| s.size).collect();
        for (i, &size) in sizes.iter().enumerate() {
            let n = if i + 1 == sizes.len() { rest.len() } else { rest.len().min(size as usize) };
            parts.push_back(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let source = stream::Source::Given(parts);
        let mut c = stream::Checker::new(source, meta, Some(data.len() as u64));
        c.drain();
        c.problems(meta)
    };
    // An empty stream is stored as one empty segment.
    let mut meta = BackupMeta::new("none", false);
    meta.data_size = Some(0);
    meta.data_sha256 = Some(sha(b""));
    meta.segments = Some(vec![crate::catalog::SegmentMeta { size: 0, sha256: sha(b"") }]);
    assert_eq!(run(b"", &meta), Vec::<String>::new());
    assert!(run(b"x", &meta)[0].contains("1 bytes longer"));

    // Segments without data_size: their sum is the size; the last segment is named.
    let mut meta = BackupMeta::new("none", false);
    meta.segments = Some(vec![
        crate::catalog::SegmentMeta { size: 3, sha256: sha(b"abc") },
        crate::catalog::SegmentMeta { size: 2, sha256: sha(b"de") },
    ]);
    assert_eq!(run(b"abcde", &meta), Vec::<String>::new());
    let p = run(b"abXde", &meta);
    assert_eq!(p, ["segment 0 of 2 (numbered from 0; bytes 0..3): sha256 mismatch"]);
    let p = run(b"abcd", &meta);
    assert_eq!(
        p,
        ["data is 1 bytes shorter than recorded (4 of 5 bytes); segment 1 of 2 (numbered from 0) \
          is incomplete"]
    );
    // Metadata that contradicts itself is said so.
    meta.data_size = Some(6);
    assert!(run(b"abcde", &meta)[0].contains("metadata is inconsistent"));
}
