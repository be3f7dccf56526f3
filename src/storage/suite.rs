//! The cases every storage passes, run against local storage in its unit tests and against a
//! real Swift (and later S3, SFTP) in theirs: the contract the pipeline relies on.

use std::any::Any;
use std::io::Read;

use super::{SegmentRef, StorageWrite, segment_refs};

/// Makes an empty container; the first value keeps it alive (a temp dir, a guard).
pub(crate) type Fresh<'a> = dyn Fn() -> (Box<dyn Any>, Box<dyn StorageWrite>) + 'a;

/// One case of the suite.
type Case = fn(&dyn StorageWrite);

/// Run every case, each on a fresh container.
pub(crate) fn run(fresh: &Fresh<'_>) {
    let cases: [(&str, Case); 9] = [
        ("small objects", small_objects),
        ("listing", listing),
        ("many names", many_names),
        ("delete", delete),
        ("upload and read back", upload_and_read_back),
        ("empty upload", empty_upload),
        ("abort", abort),
        ("conditional create", conditional_create),
        ("absent things", absent_things),
    ];
    for (name, case) in cases {
        let (_keep, storage) = fresh();
        eprintln!("storage suite on {}: {name}", storage.describe());
        case(&*storage);
    }
}

fn small_objects(s: &dyn StorageWrite) {
    s.put("metadata/tar/h_b/10/0_10/metadata", b"{\"a\": 1}").unwrap();
    assert_eq!(s.get("metadata/tar/h_b/10/0_10/metadata").unwrap().unwrap(), b"{\"a\": 1}");
    assert!(s.exists("metadata/tar/h_b/10/0_10/metadata").unwrap());
    assert!(s.exists("metadata/tar").unwrap(), "a prefix with objects under it exists");
    assert_eq!(s.size("metadata/tar/h_b/10/0_10/metadata").unwrap(), Some(8));
    // Replacing.
    s.put("metadata/tar/h_b/10/0_10/metadata", b"x").unwrap();
    assert_eq!(s.get("metadata/tar/h_b/10/0_10/metadata").unwrap().unwrap(), b"x");
    let mut text = String::new();
    s.open("metadata/tar/h_b/10/0_10/metadata").unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "x");
    s.put("e", b"").unwrap();
    assert_eq!(s.get("e").unwrap().unwrap(), b"");
}

fn listing(s: &dyn StorageWrite) {
    for name in ["b", "a", "10", "9", "c/d", "c/e/f"] {
        s.put(&format!("p/{name}"), b"1").unwrap();
    }
    s.put("q", b"1").unwrap();
    assert_eq!(s.list("p").unwrap(), ["10", "9", "a", "b", "c"]);
    assert_eq!(s.list("p/c").unwrap(), ["d", "e"]);
    assert_eq!(s.list("").unwrap(), ["p", "q"]);
    assert_eq!(s.list("nothing").unwrap(), Vec::<String>::new());
    assert_eq!(s.list("p/a").unwrap(), Vec::<String>::new(), "an object lists as empty");
}

/// More names than a network storage returns in one page (the tests set a small page).
fn many_names(s: &dyn StorageWrite) {
    let names: Vec<String> = (0..25).map(|i| format!("n{i:03}")).collect();
    for n in &names {
        s.put(&format!("m/{n}/x"), b"1").unwrap();
    }
    assert_eq!(s.list("m").unwrap(), names);
    s.delete("m").unwrap();
    assert_eq!(s.list("m").unwrap(), Vec::<String>::new());
    assert!(!s.exists("m").unwrap());
}

fn delete(s: &dyn StorageWrite) {
    s.put("data/tar/h_b/10/0_10/data", b"1").unwrap();
    s.put("data/tar/h_b/10/1_11/data", b"2").unwrap();
    s.put("data/tar/h_b/10/1_11/engine_metadata", b"2").unwrap();
    s.put("data/tar/h_b/20/0_20/data", b"3").unwrap();
    s.delete("data/tar/h_b/10/1_11/data").unwrap();
    assert!(!s.exists("data/tar/h_b/10/1_11/data").unwrap());
    assert!(s.exists("data/tar/h_b/10/1_11/engine_metadata").unwrap());
    s.delete("data/tar/h_b/10").unwrap();
    assert_eq!(s.list("data/tar/h_b").unwrap(), ["20"]);
    // Deleting what is not there is fine.
    s.delete("data/tar/h_b/10").unwrap();
    s.delete("nothing/here").unwrap();
    // A prefix delete does not take names that only start the same.
    s.put("x/ab", b"1").unwrap();
    s.put("x/a/b", b"1").unwrap();
    s.delete("x/a").unwrap();
    assert_eq!(s.list("x").unwrap(), ["ab"]);
}

fn upload_and_read_back(s: &dyn StorageWrite) {
    let key = "data/tar/h_b/10/0_10/data";
    // Parts as small as the storage takes (S3: 5 MiB but the last); 12 where that is cheap,
    // so that segment 10 must come after 9.
    let min = s.limits().unwrap().min_segment_size.unwrap_or(0) as usize;
    let count = if min > 0 { 3 } else { 12u8 };
    let parts: Vec<Vec<u8>> = (0..count)
        .map(|i| vec![i; (1000 + i as usize * 10).max(if i + 1 < count { min } else { 0 })])
        .collect();
    let mut up = s.create(key).unwrap();
    for (i, p) in parts.iter().enumerate() {
        let back = up.put_segment(i as u64, p.clone()).unwrap();
        assert!(back.is_empty(), "the buffer handed back is empty");
    }
    assert!(s.get(key).unwrap().is_none(), "invisible until commit");
    up.commit().unwrap();
    let whole = parts.concat();
    let mut read = Vec::new();
    s.open(key).unwrap().read_to_end(&mut read).unwrap();
    assert_eq!(read, whole, "segments 10 and 11 come after 9");
    assert_eq!(s.size(key).unwrap(), Some(whole.len() as u64));
    let refs = segment_refs(parts.iter().map(|p| p.len() as u64));
    for (r, p) in refs.iter().zip(&parts) {
        assert_eq!(&s.read_segment(key, r).unwrap(), p, "segment {}", r.index);
    }
    // A segment past the end is empty: the caller sees it short.
    let past =
        SegmentRef { index: u64::from(count), offset: whole.len() as u64, size: 5, sha256: None };
    assert_eq!(s.read_segment(key, &past).unwrap(), Vec::<u8>::new());
    // The data dir lists the data object; nothing temporary shows.
    assert!(s.list("data/tar/h_b/10/0_10").unwrap().contains(&"data".to_string()));
    s.delete("data/tar/h_b/10/0_10").unwrap();
    assert!(!s.exists("data/tar/h_b/10/0_10").unwrap());
    assert_eq!(s.list("data/tar/h_b/10/0_10").unwrap(), Vec::<String>::new());
}

fn empty_upload(s: &dyn StorageWrite) {
    let mut up = s.create("d/0_1/data").unwrap();
    up.put_segment(0, Vec::new()).unwrap();
    up.commit().unwrap();
    assert_eq!(s.size("d/0_1/data").unwrap(), Some(0));
    let r = SegmentRef { index: 0, offset: 0, size: 0, sha256: None };
    assert_eq!(s.read_segment("d/0_1/data", &r).unwrap(), Vec::<u8>::new());
}

fn abort(s: &dyn StorageWrite) {
    let mut up = s.create("d/0_1/data").unwrap();
    for i in 0..3 {
        up.put_segment(i, vec![7u8; 500]).unwrap();
    }
    up.abort().unwrap();
    assert!(!s.exists("d").unwrap(), "{:?}", s.list("d/0_1"));
    assert_eq!(s.list("d").unwrap(), Vec::<String>::new());
}

fn conditional_create(s: &dyn StorageWrite) {
    assert!(s.create_new("locks/tar/h_b.lock", b"one").unwrap());
    assert!(!s.create_new("locks/tar/h_b.lock", b"two").unwrap());
    assert_eq!(s.get("locks/tar/h_b.lock").unwrap().unwrap(), b"one");
    s.delete("locks/tar/h_b.lock").unwrap();
    assert!(s.create_new("locks/tar/h_b.lock", b"three").unwrap());
    assert_eq!(s.get("locks/tar/h_b.lock").unwrap().unwrap(), b"three");
}

fn absent_things(s: &dyn StorageWrite) {
    assert_eq!(s.get("no/such").unwrap(), None);
    assert_eq!(s.size("no/such").unwrap(), None);
    assert!(!s.exists("no/such").unwrap());
    assert!(!s.exists("no").unwrap());
    assert!(s.describe().len() > 3);
}
