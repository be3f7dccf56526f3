use std::io::Read;

use super::*;
use crate::error::ErrorKind;

fn storage() -> (tempfile::TempDir, LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(&dir.path().join("container")).unwrap();
    (dir, storage)
}

/// Every file name under `dir`, at any depth, relative to it.
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(all_files(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn new_does_not_create_the_root() {
    let (dir, storage) = storage();
    assert!(!dir.path().join("container").exists());
    assert_eq!(storage.list("").unwrap(), Vec::<String>::new());
    assert_eq!(storage.list("metadata/tar").unwrap(), Vec::<String>::new());
    assert!(!storage.exists("metadata").unwrap());
    assert!(!dir.path().join("container").exists());
    assert!(storage.describe().contains("container"));
}

#[test]
fn put_then_get_and_open() {
    let (_dir, storage) = storage();
    storage.put("metadata/tar/h_b/10/0_10/metadata", b"{\"a\": 1}").unwrap();
    assert_eq!(storage.get("metadata/tar/h_b/10/0_10/metadata").unwrap().unwrap(), b"{\"a\": 1}");
    let mut text = String::new();
    storage.open("metadata/tar/h_b/10/0_10/metadata").unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "{\"a\": 1}");
    assert!(storage.exists("metadata/tar/h_b/10/0_10/metadata").unwrap());
    assert!(storage.exists("metadata/tar").unwrap());
    // Replacing is atomic too.
    storage.put("metadata/tar/h_b/10/0_10/metadata", b"x").unwrap();
    assert_eq!(storage.get("metadata/tar/h_b/10/0_10/metadata").unwrap().unwrap(), b"x");
    assert_eq!(all_files(storage.root()), ["metadata/tar/h_b/10/0_10/metadata"]);
}

#[test]
fn get_missing_is_none_and_a_directory_an_error() {
    let (_dir, storage) = storage();
    assert_eq!(storage.get("a/b").unwrap(), None);
    assert!(storage.open("a/b").is_err());
    storage.put("a/b/c", b"x").unwrap();
    let err = storage.get("a/b").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("a/b"), "{err}");
}

#[test]
fn the_shared_suite_passes() {
    crate::storage::suite::run(&|| {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(&dir.path().join("c")).unwrap();
        (Box::new(dir) as Box<dyn std::any::Any>, Box::new(storage) as Box<dyn StorageWrite>)
    });
}

#[test]
fn list_is_sorted_and_hides_temp_names() {
    let (_dir, storage) = storage();
    for name in ["b", "a", "10", "9", "c/d"] {
        storage.put(&format!("p/{name}"), b"").unwrap();
    }
    fs::write(storage.root().join("p/.a.tmp-1-2"), b"half").unwrap();
    assert_eq!(storage.list("p").unwrap(), ["10", "9", "a", "b", "c"]);
    assert_eq!(storage.list("").unwrap(), ["p"]);
    assert_eq!(storage.list("p/a").unwrap(), Vec::<String>::new(), "a file lists as empty");
    assert!(storage.list("p/.a.tmp-1-2").is_err(), "temp names are not keys");
}

#[test]
fn temp_files_and_empty_dirs_do_not_exist() {
    let (_dir, storage) = storage();
    fs::create_dir_all(storage.root().join("data/x/y")).unwrap();
    fs::write(storage.root().join("data/x/y/.data.tmp-1-2"), b"half").unwrap();
    assert!(!storage.exists("data").unwrap());
    assert!(!storage.exists("data/x/y").unwrap());
    storage.put("data/x/y/data", b"1").unwrap();
    assert!(storage.exists("data").unwrap());
}

#[test]
fn upload_commit_appends_segments_in_order() {
    let (_dir, storage) = storage();
    let mut up = storage.create("data/tar/h_b/10/0_10/data").unwrap();
    up.put_segment(0, b"hello ".to_vec()).unwrap();
    up.put_segment(1, b"world".to_vec()).unwrap();
    // Invisible until commit.
    assert!(!storage.exists("data/tar/h_b/10/0_10/data").unwrap());
    assert_eq!(storage.list("data/tar/h_b/10/0_10").unwrap(), Vec::<String>::new());
    up.commit().unwrap();
    assert_eq!(storage.get("data/tar/h_b/10/0_10/data").unwrap().unwrap(), b"hello world");
    assert_eq!(all_files(storage.root()), ["data/tar/h_b/10/0_10/data"]);
}

#[test]
fn upload_rejects_out_of_order_segments() {
    let (_dir, storage) = storage();
    let mut up = storage.create("d/data").unwrap();
    up.put_segment(0, b"a".to_vec()).unwrap();
    let err = up.put_segment(2, b"c".to_vec()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(up.put_segment(0, b"a".to_vec()).is_err());
    up.put_segment(1, b"b".to_vec()).unwrap();
    up.commit().unwrap();
    assert_eq!(storage.get("d/data").unwrap().unwrap(), b"ab");
}

#[test]
fn upload_abort_and_drop_leave_nothing() {
    let (_dir, storage) = storage();
    let mut up = storage.create("d/data").unwrap();
    up.put_segment(0, b"a".to_vec()).unwrap();
    up.abort().unwrap();
    let mut up = storage.create("d/other").unwrap();
    up.put_segment(0, b"a".to_vec()).unwrap();
    drop(up);
    assert!(all_files(storage.root()).is_empty());
    assert!(!storage.exists("d").unwrap());
}

#[test]
fn delete_file_tree_and_missing() {
    let (_dir, storage) = storage();
    storage.put("data/tar/h_b/10/0_10/data", b"1").unwrap();
    storage.put("data/tar/h_b/10/1_11/data", b"2").unwrap();
    storage.put("data/tar/h_b/20/0_20/data", b"3").unwrap();
    storage.delete("data/tar/h_b/10/1_11/data").unwrap();
    assert!(!storage.exists("data/tar/h_b/10/1_11/data").unwrap());
    storage.delete("data/tar/h_b/10").unwrap();
    assert_eq!(storage.list("data/tar/h_b").unwrap(), ["20"]);
    storage.delete("data/tar/h_b/10").unwrap();
    storage.delete("nothing/here").unwrap();
    storage.delete("data/tar/h_b/20/0_20/data/below-a-file").unwrap();
}

#[test]
fn delete_does_not_follow_symlinks() {
    let (dir, storage) = storage();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), b"keep").unwrap();
    storage.put("t/file", b"1").unwrap();
    std::os::unix::fs::symlink(&outside, storage.root().join("t/link")).unwrap();
    storage.delete("t").unwrap();
    assert!(outside.join("keep").exists());
    assert!(!storage.root().join("t").exists());
}

#[test]
fn bad_keys_are_rejected() {
    let (_dir, storage) = storage();
    for key in
        ["", "/etc/passwd", "a//b", "a/", "../x", "a/../../x", "a/./b", ".", "a\0b", ".x.tmp-1-2"]
    {
        let err = storage.put(key, b"x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage, "{key:?}");
        assert!(storage.get(key).is_err(), "{key:?}");
        assert!(storage.exists(key).is_err(), "{key:?}");
        assert!(storage.delete(key).is_err(), "{key:?}");
        assert!(storage.create(key).is_err(), "{key:?}");
    }
    assert!(storage.list("../").is_err());
    assert!(LocalStorage::new(Path::new("")).is_err());
}
