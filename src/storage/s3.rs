//! S3 and S3-compatible stores (AWS, Ceph RGW, MinIO, Swift's s3api): `--container
//! bucket[/prefix]`, keys in freezer-agent 19's layout under the prefix, and the data object
//! as one multipart upload with one part per segment, as the agent writes it. Unlike the
//! agent, a failed upload is aborted *and* fails the backup.
//!
//! Requests are signed by `rusty-s3` (SigV4, no I/O of its own) and sent with the HTTP client
//! and retries the Swift backend uses; see ARCHITECTURE.md for why not a full SDK.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use md5::{Digest, Md5};
use rusty_s3::actions::{
    CreateBucket, DeleteObjects, GetObject, HeadBucket, HeadObject, ListObjectsV2,
    ObjectIdentifier, PutObject,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::error::{Error, Result};
use crate::storage::http::{Http, Reply, RetryPolicy, Transport};
use crate::storage::{Limits, SegmentRef, Storage, StorageWrite, Upload};

mod request;
mod settings;
#[cfg(test)]
mod tests;
mod upload;

pub use settings::{Addressing, S3Args, S3Settings, resolve};

use request::{Signer, failure, unescape, xml_blocks, xml_field};
use upload::S3Upload;

/// How to reach a bucket.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Endpoint, region and credentials.
    pub settings: S3Settings,
    /// Proxy and timeouts (the CA file comes from the settings).
    pub transport: Transport,
    /// How hard to retry.
    pub retry: RetryPolicy,
    /// `bucket` or `bucket/prefix`, as `--container` gives it.
    pub container: String,
    /// Parts uploaded or read at once.
    pub concurrency: usize,
}

/// S3's own limits: parts of 5 MiB to 5 GiB (the last may be smaller), 10,000 of them.
const LIMITS: Limits = Limits {
    max_segment_size: Some(5 << 30),
    min_segment_size: Some(5 << 20),
    max_segments: Some(10_000),
};

/// Keys per DeleteObjects request (S3's maximum).
const DELETE_BATCH: usize = 1000;

/// A bucket (and prefix); cheap to clone.
#[derive(Clone)]
pub struct S3Storage(Arc<S3>);

pub(crate) struct S3 {
    signer: Signer,
    /// `""` or `prefix/`: what every key is stored under.
    prefix: String,
    endpoint: String,
    concurrency: usize,
    /// Listing page size for tests; `None`: the server's (1000).
    page: Option<usize>,
    bucket_ready: AtomicBool,
    /// The server refused `If-None-Match` once: do not ask again.
    no_conditional_put: AtomicBool,
}

impl S3Storage {
    /// A storage for `opts`; nothing is requested until the first call.
    pub fn new(opts: S3Options) -> Result<S3Storage> {
        let (bucket, prefix) = match opts.container.split_once('/') {
            Some((b, p)) => (b.to_string(), format!("{}/", p.trim_matches('/'))),
            None => (opts.container.clone(), String::new()),
        };
        if bucket.is_empty() || prefix == "/" {
            return Err(Error::usage(format!(
                "invalid S3 --container '{}': give a bucket name, optionally followed by /prefix",
                opts.container
            )));
        }
        let s = &opts.settings;
        let url = s
            .endpoint
            .parse()
            .map_err(|e| Error::usage(format!("invalid S3 endpoint '{}': {e}", s.endpoint)))?;
        let style = match s.addressing {
            Addressing::Path => UrlStyle::Path,
            Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(url, style, bucket.clone(), s.region.clone()).map_err(|e| {
            Error::usage(format!("cannot address bucket '{bucket}' at {}: {e}", s.endpoint))
        })?;
        let credentials = match &s.session_token {
            Some(t) => {
                Credentials::new_with_token(s.access_key.clone(), s.secret_key.expose(), t.expose())
            }
            None => Credentials::new(s.access_key.clone(), s.secret_key.expose()),
        };
        let transport = Transport { ca_file: s.ca_file.clone(), ..opts.transport };
        let concurrency = opts.concurrency.max(1);
        let http = Http::new(&transport, opts.retry, concurrency)?;
        Ok(S3Storage(Arc::new(S3 {
            signer: Signer { http, bucket, credentials },
            prefix,
            endpoint: s.endpoint.clone(),
            concurrency,
            page: None,
            bucket_ready: AtomicBool::new(false),
            no_conditional_put: AtomicBool::new(false),
        })))
    }

    #[cfg(test)]
    fn with_page(mut self, page: usize) -> S3Storage {
        if let Some(s) = Arc::get_mut(&mut self.0) {
            s.page = Some(page);
        }
        self
    }
}

impl S3 {
    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn bucket(&self) -> &Bucket {
        &self.signer.bucket
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.signer.credentials)
    }

    fn where_(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!(" (prefix {})", self.prefix.trim_end_matches('/'))
        };
        format!("s3 bucket {}{prefix} at {}", self.bucket().name(), self.endpoint)
    }

    fn fail(&self, what: &str, reply: &Reply) -> Error {
        failure(what, &self.where_(), reply)
    }

    /// Create the bucket once per run if it is missing (as freezer-agent's `prepare` does).
    fn ensure_bucket(&self) -> Result<()> {
        if self.bucket_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let head = HeadBucket::new(self.bucket(), self.creds());
        let r = self.signer.send(head, &[], &[], b"", "HEAD bucket")?;
        if r.status == 404 {
            log::info!("creating the bucket {}", self.bucket().name());
            let body = match self.bucket().region() {
                "us-east-1" => String::new(),
                region => format!(
                    "<CreateBucketConfiguration><LocationConstraint>{region}\
                     </LocationConstraint></CreateBucketConfiguration>"
                ),
            };
            let create = CreateBucket::new(self.bucket(), &self.signer.credentials);
            let r = self.signer.send(create, &[], &[], body.as_bytes(), "PUT bucket")?;
            let owned = String::from_utf8_lossy(&r.body).contains("BucketAlreadyOwnedByYou");
            if r.status != 200 && !owned {
                return Err(self.fail("creating the bucket", &r));
            }
        } else if r.status != 200 {
            return Err(self.fail("checking the bucket", &r));
        }
        self.bucket_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// PUT a whole object with its MD5 for the server to check; `extra` headers are signed.
    fn put_object(&self, name: &str, data: &[u8], extra: &[(&str, &str)]) -> Result<Reply> {
        self.ensure_bucket()?;
        let md5 = base64_md5(data);
        let mut signed = vec![("content-md5", md5.as_str())];
        signed.extend_from_slice(extra);
        signed.sort_unstable();
        let put = PutObject::new(self.bucket(), self.creds(), name);
        self.signer.send(put, &signed, &[], data, &format!("PUT {name}"))
    }

    /// GET an object, or a byte range of it.
    fn get_object(&self, name: &str, range: Option<(u64, u64)>) -> Result<Reply> {
        let get = GetObject::new(self.bucket(), self.creds(), name);
        let range = range.map(|(from, len)| format!("bytes={from}-{}", from + len - 1));
        let unsigned: Vec<(&str, &str)> =
            range.as_deref().map(|r| vec![("Range", r)]).unwrap_or_default();
        self.signer.send(get, &[], &unsigned, b"", &format!("GET {name}"))
    }

    fn head_object(&self, name: &str) -> Result<Reply> {
        let head = HeadObject::new(self.bucket(), self.creds(), name);
        self.signer.send(head, &[], &[], b"", &format!("HEAD {name}"))
    }

    /// One page of a listing: (keys with sizes, common prefixes, next token).
    fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<(Vec<String>, Vec<String>, Option<String>)> {
        let mut list = ListObjectsV2::new(self.bucket(), self.creds());
        list.with_prefix(prefix);
        if delimiter {
            list.with_delimiter("/");
        }
        if let Some(t) = token {
            list.with_continuation_token(t);
        }
        if let Some(n) = max.or(self.page) {
            list.with_max_keys(n);
        }
        let r = self.signer.send(list, &[], &[], b"", &format!("listing {prefix}"))?;
        if r.status == 404 {
            return Ok(Default::default());
        }
        if r.status != 200 {
            return Err(self.fail(&format!("listing {prefix}"), &r));
        }
        let text = String::from_utf8_lossy(&r.body);
        let page = ListObjectsV2::parse_response(&text).map_err(|e| {
            Error::storage(format!("{} sent a listing that is not S3's XML: {e}", self.where_()))
        })?;
        let keys = page.contents.into_iter().map(|c| c.key).collect();
        let prefixes = page.common_prefixes.into_iter().map(|p| p.prefix).collect();
        Ok((keys, prefixes, page.next_continuation_token))
    }

    /// Every key under `prefix` (full names), following the pages.
    fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (keys, _, next) = self.list_page(prefix, false, token.as_deref(), None)?;
            all.extend(keys);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// Delete full names, 1000 per request.
    fn delete_keys(&self, names: &[String]) -> Result<()> {
        for batch in names.chunks(DELETE_BATCH) {
            let ids: Vec<ObjectIdentifier> =
                batch.iter().map(|n| ObjectIdentifier::new(n.clone())).collect();
            let mut action = DeleteObjects::new(self.bucket(), self.creds(), ids.iter());
            action.set_quiet(true);
            let url_action = DeleteObjects::new(self.bucket(), self.creds(), ids.iter());
            let (body, md5) = action.body_with_md5();
            let r = self.signer.send(
                url_action,
                &[("content-md5", md5.as_str())],
                &[],
                body.as_bytes(),
                "DeleteObjects",
            )?;
            let text = String::from_utf8_lossy(&r.body);
            if r.status != 200 || text.contains("<Error>") {
                return Err(self.fail(&format!("deleting {} objects", batch.len()), &r));
            }
        }
        Ok(())
    }

    /// Unfinished multipart uploads under `prefix` (full): (key, upload id).
    fn uploads(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            let mut query = vec![("prefix", prefix), ("uploads", "")];
            if !key_marker.is_empty() {
                query = vec![
                    ("key-marker", key_marker.as_str()),
                    ("prefix", prefix),
                    ("upload-id-marker", id_marker.as_str()),
                    ("uploads", ""),
                ];
            }
            let r = self.signer.send_raw(rusty_s3::Method::Get, &query, "ListMultipartUploads")?;
            if r.status == 501 {
                // s3s-fs: nothing to find, then (its uploads vanish when aborted or done).
                log::debug!("{} cannot list unfinished uploads", self.where_());
                return Ok(out);
            }
            if r.status != 200 {
                return Err(self.fail("listing unfinished uploads", &r));
            }
            let text = String::from_utf8_lossy(&r.body).into_owned();
            for block in xml_blocks(&text, "Upload") {
                if let (Some(k), Some(id)) = (xml_field(block, "Key"), xml_field(block, "UploadId"))
                {
                    out.push((unescape(k), unescape(id)));
                }
            }
            let more = xml_field(&text, "IsTruncated") == Some("true");
            let next_key = xml_field(&text, "NextKeyMarker").map(unescape).unwrap_or_default();
            if !more || next_key.is_empty() {
                return Ok(out);
            }
            id_marker = xml_field(&text, "NextUploadIdMarker").map(unescape).unwrap_or_default();
            key_marker = next_key;
        }
    }

    /// Abort a multipart upload; one already gone (404) is fine.
    pub(crate) fn abort_upload(&self, name: &str, upload_id: &str) -> Result<()> {
        let abort = rusty_s3::actions::AbortMultipartUpload::new(
            self.bucket(),
            self.creds(),
            name,
            upload_id,
        );
        let r =
            self.signer.send(abort, &[], &[], b"", &format!("aborting the upload of {name}"))?;
        if !matches!(r.status, 200 | 204 | 404) {
            return Err(self.fail(&format!("aborting the upload of {name}"), &r));
        }
        Ok(())
    }
}

/// Content-MD5: the base64 of the MD5.
fn base64_md5(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

/// Whether `name` is `full` or under it.
fn is_under(name: &str, full: &str) -> bool {
    name == full || name.strip_prefix(full).is_some_and(|rest| rest.starts_with('/'))
}

/// A data object read in ranges of `CHUNK` bytes (agent backups record no segments).
struct RangeReader {
    s3: Arc<S3>,
    name: String,
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

const CHUNK: u64 = 8 << 20;

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() && !self.done {
            let r = self
                .s3
                .get_object(&self.name, Some((self.offset, CHUNK)))
                .map_err(std::io::Error::other)?;
            match r.status {
                200 | 206 => {
                    self.buf = r.body;
                    // A server that ignores Range sends it all at once.
                    self.done = r.status == 200 || (self.buf.len() as u64) < CHUNK;
                }
                416 => (self.buf, self.done) = (Vec::new(), true),
                _ => {
                    return Err(std::io::Error::other(
                        self.s3.fail(&format!("reading {}", self.name), &r),
                    ));
                }
            }
            self.offset += self.buf.len() as u64;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Storage for S3Storage {
    fn describe(&self) -> String {
        self.0.where_()
    }

    fn kind(&self) -> &'static str {
        "s3"
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let s = &self.0;
        let dir = if prefix.is_empty() { s.prefix.clone() } else { format!("{}/", s.full(prefix)) };
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let (keys, prefixes, next) = s.list_page(&dir, true, token.as_deref(), None)?;
            for full in keys.iter().chain(&prefixes) {
                let name = full[dir.len().min(full.len())..].trim_end_matches('/');
                if !name.is_empty() {
                    names.push(name.to_string());
                }
            }
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        // By listing, not HEAD: a file-backed server (s3s-fs) answers a HEAD on a leftover
        // empty "directory" with a 500. The object itself sorts first among its prefix's.
        let s = &self.0;
        let full = s.full(key);
        let (keys, _, _) = s.list_page(&full, false, None, Some(1))?;
        if keys.first() == Some(&full) {
            return Ok(true);
        }
        let (keys, _, _) = s.list_page(&format!("{full}/"), false, None, Some(1))?;
        Ok(!keys.is_empty())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let s = &self.0;
        let r = s.get_object(&s.full(key), None)?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(s.fail(&format!("reading {key}"), &r)),
        }
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        if self.size(key)?.is_none() {
            return Err(Error::new(
                crate::ErrorKind::Corrupt,
                format!("{key} is missing from {}", self.describe()),
            ));
        }
        let (s3, name) = (Arc::clone(&self.0), self.0.full(key));
        Ok(Box::new(RangeReader { s3, name, offset: 0, buf: Vec::new(), pos: 0, done: false }))
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        if segment.size == 0 {
            return Ok(Vec::new());
        }
        let s = &self.0;
        let r = s.get_object(&s.full(key), Some((segment.offset, segment.size)))?;
        match r.status {
            206 => Ok(r.body),
            200 => {
                let from = (segment.offset as usize).min(r.body.len());
                let to = (from + segment.size as usize).min(r.body.len());
                Ok(r.body[from..to].to_vec())
            }
            404 | 416 => Ok(Vec::new()),
            _ => Err(s.fail(&format!("reading segment {} of {key}", segment.index), &r)),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let s = &self.0;
        let r = s.head_object(&s.full(key))?;
        match r.status {
            200 => Ok(r.header("content-length").and_then(|v| v.parse().ok())),
            404 => Ok(None),
            _ => Err(s.fail(&format!("checking {key}"), &r)),
        }
    }

    fn parallel_reads(&self) -> usize {
        self.0.concurrency
    }

    fn container_exists(&self) -> Result<bool> {
        let s = &self.0;
        let r =
            s.signer.send(HeadBucket::new(s.bucket(), s.creds()), &[], &[], b"", "HEAD bucket")?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(s.fail("checking the bucket", &r)),
        }
    }

    fn limits(&self) -> Result<Limits> {
        Ok(LIMITS)
    }
}

impl StorageWrite for S3Storage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let r = self.0.put_object(&self.0.full(key), data, &[])?;
        if r.status != 200 {
            return Err(self.0.fail(&format!("storing {key}"), &r));
        }
        Ok(())
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.0.ensure_bucket()?;
        Ok(Box::new(S3Upload::start(Arc::clone(&self.0), self.0.full(key))?))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let s = &self.0;
        let full = s.full(key);
        let names: Vec<String> =
            s.list_all(&full)?.into_iter().filter(|n| is_under(n, &full)).collect();
        s.delete_keys(&names)?;
        for (name, id) in s.uploads(&full)? {
            if is_under(&name, &full) {
                s.abort_upload(&name, &id)?;
            }
        }
        Ok(())
    }

    /// Atomic where the server honours `If-None-Match: *` on PUT (AWS since 2024, Ceph RGW,
    /// MinIO). Where it refuses it (Swift's s3api answers 501), a check, a write and a read
    /// back: two runs starting in the same instant could both win, and a warning says so.
    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let s = &self.0;
        if self.size(key)?.is_some() {
            return Ok(false);
        }
        if !s.no_conditional_put.load(Ordering::Relaxed) {
            let r = s.put_object(&s.full(key), data, &[("if-none-match", "*")])?;
            match r.status {
                200 => return Ok(true),
                412 | 409 => return Ok(false),
                501 => {
                    log::info!(
                        "{} does not support conditional writes (If-None-Match): the lock that \
                         keeps two runs of the same backup apart is best-effort here",
                        s.where_()
                    );
                    s.no_conditional_put.store(true, Ordering::Relaxed);
                }
                _ => return Err(s.fail(&format!("creating {key}"), &r)),
            }
        }
        self.put(key, data)?;
        Ok(self.get(key)?.as_deref() == Some(data))
    }
}
