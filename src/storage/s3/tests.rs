//! Against real signature-checking S3 servers that `scripts/services start` runs: Swift's
//! s3api (`FREEZER_TEST_S3_*`) and s3s-fs (`FREEZER_TEST_S3S_*`). Without them these tests
//! fail, naming the command.

use super::*;
use crate::storage::suite;
use crate::storage::swift::Secret;
use crate::storage::swift::tests::{fresh_container, var};

/// One of the test servers: `S3` (Swift's s3api) or `S3S` (s3s-fs).
fn options(server: &str, container: &str) -> S3Options {
    let v = |name: &str| var(&format!("FREEZER_TEST_{server}_{name}"));
    S3Options {
        settings: S3Settings {
            endpoint: v("ENDPOINT"),
            region: v("REGION"),
            addressing: Addressing::Path,
            access_key: v("ACCESS_KEY"),
            secret_key: Secret::new(v("SECRET_KEY")),
            session_token: None,
            ca_file: None,
        },
        transport: Transport::default(),
        retry: RetryPolicy {
            retries: 2,
            base_delay: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        container: container.to_string(),
        concurrency: 3,
    }
}

/// Bucket names: lower case, no underscores.
fn fresh_bucket() -> String {
    fresh_container("s3").to_lowercase().replace('_', "-").chars().take(63).collect()
}

/// Removes what a test wrote, and the bucket.
struct Cleanup(S3Storage);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let s = &self.0.0;
        if let Ok(names) = s.list_all(&s.prefix) {
            let _ = s.delete_keys(&names);
        }
        let del = rusty_s3::actions::DeleteBucket::new(s.bucket(), &s.signer.credentials);
        let _ = s.signer.send(del, &[], &[], b"", "DELETE bucket");
    }
}

fn run_suite(server: &str, prefix: &str) {
    suite::run(&|| {
        let container = format!("{}{prefix}", fresh_bucket());
        // A small listing page, so the suite's "many names" crosses several pages.
        let storage = S3Storage::new(options(server, &container)).unwrap().with_page(7);
        (
            Box::new(Cleanup(storage.clone())) as Box<dyn std::any::Any>,
            Box::new(storage) as Box<dyn StorageWrite>,
        )
    });
}

#[test]
fn suite_on_swift_s3api() {
    run_suite("S3", "");
}

#[test]
fn suite_on_swift_s3api_with_a_prefix() {
    run_suite("S3", "/some/prefix");
}

#[test]
fn suite_on_s3s_fs() {
    run_suite("S3S", "/p");
}

/// Parts of 5 MiB (S3's minimum) and a short last one, read back by range.
fn multipart_round_trip(server: &str) {
    let s = S3Storage::new(options(server, &fresh_bucket())).unwrap();
    let _c = Cleanup(s.clone());
    let part = 5 << 20;
    let data: Vec<u8> = (0..2 * part + 1000).map(|i| (i * 7 % 251) as u8).collect();
    let mut up = s.create("d/data").unwrap();
    for (i, chunk) in data.chunks(part).enumerate() {
        up.put_segment(i as u64, chunk.to_vec()).unwrap();
    }
    assert!(!s.exists("d/data").unwrap(), "invisible before commit");
    up.commit().unwrap();
    assert_eq!(s.size("d/data").unwrap(), Some(data.len() as u64));
    let seg = SegmentRef { index: 2, offset: 2 * part as u64, size: 1000, sha256: None };
    assert_eq!(s.read_segment("d/data", &seg).unwrap(), &data[2 * part..]);
    let mut all = Vec::new();
    s.open("d/data").unwrap().read_to_end(&mut all).unwrap();
    assert!(all == data, "the whole object reads back");
    assert!(s.0.uploads("").unwrap().is_empty(), "no unfinished upload is left");
}

#[test]
fn multipart_on_swift_s3api() {
    multipart_round_trip("S3");
}

#[test]
fn multipart_on_s3s_fs() {
    multipart_round_trip("S3S");
}

/// An aborted upload, and a prune of a started one, leave no parts behind.
#[test]
fn abort_and_delete_leave_no_unfinished_upload() {
    let s = S3Storage::new(options("S3", &fresh_bucket())).unwrap();
    let _c = Cleanup(s.clone());
    let mut up = s.create("x/data").unwrap();
    up.put_segment(0, vec![1; 5 << 20]).unwrap();
    up.abort().unwrap();
    assert!(s.0.uploads("").unwrap().is_empty());
    // A crashed run's upload (dropped, never committed) is found and removed by delete.
    let mut up = s.create("y/1/data").unwrap();
    up.put_segment(0, vec![2; 1000]).unwrap();
    std::mem::forget(up);
    assert_eq!(s.0.uploads("").unwrap().len(), 1);
    s.delete("y").unwrap();
    assert!(s.0.uploads("").unwrap().is_empty());
}

#[test]
fn a_wrong_secret_names_the_problem() {
    let mut opts = options("S3", &fresh_bucket());
    opts.settings.secret_key = Secret::new("not-the-secret");
    let err = S3Storage::new(opts).unwrap().put("k", b"v").unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("secret key is wrong"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn a_missing_bucket_is_created_on_first_write_only() {
    let name = fresh_bucket();
    let s = S3Storage::new(options("S3", &name)).unwrap();
    let _c = Cleanup(s.clone());
    assert!(!s.container_exists().unwrap());
    assert_eq!(s.list("").unwrap(), Vec::<String>::new());
    assert!(!s.container_exists().unwrap(), "reading creates nothing");
    s.put("a", b"1").unwrap();
    assert!(s.container_exists().unwrap());
}
