//! OpenStack Swift storage, in freezer-agent 19's layout: everything in one container
//! (`--container name[/prefix]`, created if missing); a data object is its segments
//! `…/<L>_<T>/segments/%08d` plus a zero-byte DLO manifest `…/<L>_<T>/data`; small objects are
//! plain objects. Our own client (auth in [`auth`], HTTP and retries in [`http`]).
//!
//! Reads go segment by segment, never through the server's DLO join, so a retry repeats one
//! segment. Listings follow `marker` pages; deletes use the cluster's bulk delete when its
//! `/info` offers it. The lock's conditional create is `If-None-Match: *`, atomic in Swift.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::{Limits, SegmentRef, Storage, StorageWrite, Upload};

mod auth;
mod client;
mod freezerc1;
mod settings;
#[cfg(test)]
pub(crate) mod tests;
mod upload;

pub use crate::storage::http::{RetryPolicy, Transport};
pub use auth::{Auth, EndpointFilter, Interface, Named, Secret, V3Method};
pub use freezerc1::Freezerc1View;
pub use settings::{OsArgs, resolve_auth};

use client::{Client, Target, encode_query};
use upload::{SwiftUpload, segment_name};

/// Everything needed to reach one container.
#[derive(Clone, Debug)]
pub struct SwiftOptions {
    pub auth: Auth,
    pub endpoint: EndpointFilter,
    /// Overrides the catalog's URL (`--os-storage-url`, `OS_STORAGE_URL`).
    pub storage_url: Option<String>,
    pub transport: Transport,
    pub retry: RetryPolicy,
    /// `container` or `container/prefix`, as `--container` gives it.
    pub container: String,
    /// Segments uploaded or read at once.
    pub concurrency: usize,
}

/// Defaults for what `/info` did not say.
const DEFAULT_MAX_FILE_SIZE: u64 = 5 << 30;
const DEFAULT_LISTING_LIMIT: usize = 10_000;

/// What the cluster's `/info` says about limits.
#[derive(Clone, Copy, Debug)]
struct Info {
    max_file_size: u64,
    listing_limit: usize,
    /// Names per bulk delete, if the cluster has it.
    bulk_delete: Option<usize>,
}

/// A Swift container; cheap to clone (the client is shared).
#[derive(Clone)]
pub struct SwiftStorage(Arc<Swift>);

pub(crate) struct Swift {
    client: Client,
    /// `""` or `prefix/`: what every key is stored under.
    prefix: String,
    concurrency: usize,
    info: OnceLock<Info>,
    /// Listing page size for tests; `None`: the cluster's limit.
    page: Option<usize>,
    container_ready: AtomicBool,
}

impl SwiftStorage {
    /// A storage for `opts`; nothing is requested until the first call.
    pub fn new(opts: SwiftOptions) -> Result<SwiftStorage> {
        let (container, prefix) = match opts.container.split_once('/') {
            Some((c, p)) => (c.to_string(), format!("{}/", p.trim_matches('/'))),
            None => (opts.container.clone(), String::new()),
        };
        if container.is_empty() || prefix == "/" {
            return Err(Error::usage(format!(
                "invalid Swift --container '{}': give a container name, optionally followed by /prefix",
                opts.container
            )));
        }
        let concurrency = opts.concurrency.max(1);
        let http = crate::storage::http::Http::new(&opts.transport, opts.retry, concurrency)?;
        let client = Client::new(http, opts.auth, opts.endpoint, opts.storage_url, container);
        Ok(SwiftStorage(Arc::new(Swift {
            client,
            prefix,
            concurrency,
            info: OnceLock::new(),
            page: None,
            container_ready: AtomicBool::new(false),
        })))
    }

    /// Log in now, so that a wrong password is reported before anything else happens.
    pub fn connect(&self) -> Result<()> {
        self.0.client.session().map(|_| ())
    }

    #[cfg(test)]
    fn with_page(mut self, page: usize) -> SwiftStorage {
        if let Some(s) = Arc::get_mut(&mut self.0) {
            s.page = Some(page);
        }
        self
    }
}

impl Swift {
    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn container(&self) -> &str {
        &self.client.container
    }

    fn info(&self) -> Info {
        *self.info.get_or_init(|| {
            self.fetch_info().unwrap_or_else(|e| {
                log::debug!("Swift /info unavailable ({e}); assuming the default limits");
                Info {
                    max_file_size: DEFAULT_MAX_FILE_SIZE,
                    listing_limit: DEFAULT_LISTING_LIMIT,
                    bulk_delete: None,
                }
            })
        })
    }

    fn fetch_info(&self) -> Result<Info> {
        let url = self.client.storage_url()?;
        let root = match url.find("/v1/") {
            Some(i) => url[..i].to_string(),
            None => url
                .trim_end_matches('/')
                .rsplit_once('/')
                .map_or(url.clone(), |(r, _)| r.to_string()),
        };
        let info_url = format!("{root}/info");
        let r = self.client.http.send("GET", &info_url, &[], b"", &format!("GET {info_url}"))?;
        if r.status != 200 {
            return Err(Error::storage(format!("HTTP {}", r.status)));
        }
        let v = r.json(&info_url)?;
        let swift = &v["swift"];
        Ok(Info {
            max_file_size: swift["max_file_size"].as_u64().unwrap_or(DEFAULT_MAX_FILE_SIZE),
            listing_limit: swift["container_listing_limit"]
                .as_u64()
                .map_or(DEFAULT_LISTING_LIMIT, |n| n as usize),
            bulk_delete: v["bulk_delete"]["max_deletes_per_request"]
                .as_u64()
                .map(|n| n.clamp(1, 10_000) as usize),
        })
    }

    fn where_(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!(" (prefix {})", self.prefix.trim_end_matches('/'))
        };
        let at = self.client.storage_url().unwrap_or_else(|_| "(not logged in)".into());
        format!("swift container {}{prefix} at {at}", self.container())
    }

    fn fail(&self, what: &str, status: u16) -> Error {
        Error::storage(format!("{what} in {}: unexpected HTTP {status}", self.where_()))
    }

    /// Create the container once per run (a PUT on an existing one changes nothing).
    fn ensure_container(&self) -> Result<()> {
        if self.container_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let c = self.container().to_string();
        let r = self.client.request("PUT", Target::Container(&c), "", &[], b"")?;
        if !matches!(r.status, 201 | 202 | 204) {
            return Err(self.fail(&format!("creating the container {c}"), r.status));
        }
        self.container_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// PUT an object with its MD5 for Swift to check (422 if it arrived changed: sent again).
    pub(crate) fn put_object(&self, name: &str, data: &[u8], extra: &[(&str, &str)]) -> Result<()> {
        self.ensure_container()?;
        // The caller's MD5 if it gave one (segments: hashed on the upload thread), else ours.
        let given = extra.iter().find(|(n, _)| n.eq_ignore_ascii_case("etag")).map(|(_, v)| *v);
        let etag = given.map_or_else(|| hex::encode(Md5::digest(data)), str::to_string);
        let mut headers = vec![("Content-Type", "application/octet-stream")];
        headers.extend_from_slice(extra);
        if given.is_none() {
            headers.push(("ETag", &etag));
        }
        let mut last = 0;
        for attempt in 0..3 {
            let r = self.client.request(
                "PUT",
                Target::Object(self.container(), name),
                "",
                &headers,
                data,
            )?;
            match r.status {
                201 if r
                    .header("etag")
                    .is_none_or(|t| t.trim_matches('"').eq_ignore_ascii_case(&etag)) =>
                {
                    return Ok(());
                }
                201 | 422 if attempt < 2 => log::warn!(
                    "PUT {name}: the stored MD5 differs from the data sent; sending it again"
                ),
                201 | 422 => {
                    return Err(Error::storage(format!(
                        "PUT {name} in {}: the data arrived changed three times (MD5 mismatch)",
                        self.where_()
                    )));
                }
                // The container vanished since this run created it: make it again, once.
                404 if self.container_ready.swap(false, Ordering::Relaxed) => {
                    self.ensure_container()?
                }
                s => return Err(self.fail(&format!("storing {name}"), s)),
            }
            last = r.status;
        }
        Err(self.fail(&format!("storing {name}"), last))
    }

    /// GET a whole object of `container`; `None` when absent.
    fn get_object(&self, container: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let r = self.client.request("GET", Target::Object(container, name), "", &[], b"")?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            s => Err(self.fail(&format!("reading {name}"), s)),
        }
    }

    fn head(&self, name: &str) -> Result<Option<Head>> {
        let r =
            self.client.request("HEAD", Target::Object(self.container(), name), "", &[], b"")?;
        match r.status {
            200 | 204 => Ok(Some(Head {
                size: r.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
                manifest: r.header("x-object-manifest").map(str::to_string),
            })),
            404 => Ok(None),
            s => Err(self.fail(&format!("checking {name}"), s)),
        }
    }

    /// One page of a listing of `container`: (names, subdirs); `None` if the container is absent.
    fn list_page(
        &self,
        container: &str,
        prefix: &str,
        delimiter: bool,
        marker: &str,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let mut query = format!("format=json&limit={limit}&prefix={}", encode_query(prefix));
        if delimiter {
            query.push_str("&delimiter=%2F");
        }
        if !marker.is_empty() {
            query.push_str(&format!("&marker={}", encode_query(marker)));
        }
        let r = self.client.request(
            "GET",
            Target::Container(container),
            &query,
            &[("Accept", "application/json")],
            b"",
        )?;
        match r.status {
            200 => {}
            204 => return Ok(Some(Vec::new())),
            404 => return Ok(None),
            s => return Err(self.fail(&format!("listing {prefix}"), s)),
        }
        let v = r.json(&self.where_())?;
        let entries =
            v.as_array().ok_or_else(|| Error::storage("a Swift listing is not a JSON list"))?;
        Ok(Some(
            entries
                .iter()
                .filter_map(|e| {
                    e["name"].as_str().or_else(|| e["subdir"].as_str()).map(str::to_string)
                })
                .collect(),
        ))
    }

    /// Every name in `container` starting with `prefix` (with a delimiter: up to the next `/`).
    fn list_names(&self, container: &str, prefix: &str, delimiter: bool) -> Result<Vec<String>> {
        let limit = self.page.unwrap_or_else(|| self.info().listing_limit);
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let Some(page) = self.list_page(container, prefix, delimiter, &marker, limit)? else {
                return Ok(out);
            };
            let full = page.len() >= limit;
            if let Some(last) = page.last() {
                marker = last.clone();
            }
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Full names of every object under `prefix` (full) in our container.
    pub(crate) fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_names(self.container(), prefix, false)
    }

    /// Delete objects by full name; absent ones are fine.
    pub(crate) fn delete_objects(&self, names: &[String]) -> Result<()> {
        match self.info().bulk_delete {
            Some(max) if names.len() > 1 => {
                for chunk in names.chunks(max) {
                    self.bulk_delete(chunk)?;
                }
                Ok(())
            }
            _ => names.iter().try_for_each(|n| self.delete_object(n)),
        }
    }

    fn delete_object(&self, name: &str) -> Result<()> {
        let r =
            self.client.request("DELETE", Target::Object(self.container(), name), "", &[], b"")?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            s => Err(self.fail(&format!("deleting {name}"), s)),
        }
    }

    fn bulk_delete(&self, names: &[String]) -> Result<()> {
        let body: String = names
            .iter()
            .map(|n| format!("/{}/{}\n", client::encode(self.container()), client::encode(n)))
            .collect();
        let headers = [("Content-Type", "text/plain"), ("Accept", "application/json")];
        let r = self.client.request(
            "POST",
            Target::Account,
            "bulk-delete",
            &headers,
            body.as_bytes(),
        )?;
        if r.status != 200 {
            return Err(self.fail("a bulk delete", r.status));
        }
        let v = r.json(&self.where_())?;
        let status = v["Response Status"].as_str().unwrap_or("");
        let errors = v["Errors"].as_array().map_or(0, Vec::len);
        if errors > 0 || !(status.starts_with("200") || status.is_empty()) {
            return Err(Error::storage(format!(
                "a bulk delete of {} objects in {} failed ({status}): {}",
                names.len(),
                self.where_(),
                v["Errors"]
            )));
        }
        Ok(())
    }

    /// Best effort: remove everything under `prefix` (full); failures are logged.
    pub(crate) fn delete_prefix(&self, prefix: &str) {
        if let Err(e) = self.list_all(prefix).and_then(|names| self.delete_objects(&names)) {
            log::warn!("could not remove {prefix}* from {}: {e}", self.where_());
        }
    }

    /// The segment objects a manifest points at, in segment order.
    fn manifest_segments(&self, manifest: &str) -> Result<(String, Vec<String>)> {
        let (container, prefix) = manifest.split_once('/').unwrap_or((manifest, ""));
        let container = percent_decode(container);
        let prefix = percent_decode(prefix);
        let mut names = self.list_names(&container, &prefix, false)?;
        // freezerc 1.0 numbered segments 0, 1, … 10 without padding: order by number.
        names.sort_by_key(|n| {
            let last = n.rsplit('/').next().unwrap_or("");
            (last.parse::<u64>().ok(), n.clone())
        });
        Ok((container, names))
    }
}

/// What a HEAD says.
struct Head {
    size: u64,
    manifest: Option<String>,
}

/// Undo `%XX` escapes (an `X-Object-Manifest` value is URL-encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SwiftStorage {
    /// Stream an object by its full name: a DLO's segments one GET each (retried alone),
    /// in segment order, or a plain object.
    pub(crate) fn open_object(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let s = &self.0;
        let head = s.head(name)?.ok_or_else(|| {
            Error::new(ErrorKind::Corrupt, format!("{name} is missing from {}", s.where_()))
        })?;
        let Some(manifest) = head.manifest else {
            let data = s.get_object(s.container(), name)?.unwrap_or_default();
            return Ok(Box::new(io::Cursor::new(data)));
        };
        let (container, segments) = s.manifest_segments(&manifest)?;
        Ok(Box::new(Segments {
            swift: Arc::clone(&self.0),
            container,
            names: segments.into(),
            current: io::Cursor::new(Vec::new()),
        }))
    }
}

impl Storage for SwiftStorage {
    fn describe(&self) -> String {
        self.0.where_()
    }

    fn kind(&self) -> &'static str {
        "swift"
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let s = &self.0;
        let full =
            if prefix.is_empty() { s.prefix.clone() } else { format!("{}/", s.full(prefix)) };
        let mut names: Vec<String> = s
            .list_names(s.container(), &full, true)?
            .into_iter()
            .filter_map(|n| n.strip_prefix(&full).map(|r| r.trim_end_matches('/').to_string()))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let s = &self.0;
        if s.head(&s.full(key))?.is_some() {
            return Ok(true);
        }
        let under = format!("{}/", s.full(key));
        Ok(s.list_page(s.container(), &under, false, "", 1)?.is_some_and(|p| !p.is_empty()))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.get_object(self.0.container(), &self.0.full(key))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        self.open_object(&self.0.full(key))
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        let s = &self.0;
        let dir = s.full(key).rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
        let name = segment_name(&format!("{dir}segments"), segment.index);
        Ok(s.get_object(s.container(), &name)?.unwrap_or_default())
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.0.head(&self.0.full(key))?.map(|h| h.size))
    }

    fn parallel_reads(&self) -> usize {
        self.0.concurrency
    }

    fn container_exists(&self) -> Result<bool> {
        let s = &self.0;
        let c = s.container().to_string();
        let r = s.client.request("HEAD", Target::Container(&c), "", &[], b"")?;
        match r.status {
            200 | 204 => Ok(true),
            404 => Ok(false),
            st => Err(s.fail(&format!("checking the container {c}"), st)),
        }
    }

    fn limits(&self) -> Result<Limits> {
        Ok(Limits { max_segment_size: Some(self.0.info().max_file_size), ..Limits::default() })
    }
}

impl StorageWrite for SwiftStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.0.put_object(&self.0.full(key), data, &[])
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.0.ensure_container()?;
        let upload = SwiftUpload::start(Arc::clone(&self.0), self.0.full(key), self.0.concurrency)?;
        Ok(Box::new(upload))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let s = &self.0;
        let name = s.full(key);
        let mut names = s.list_all(&format!("{name}/"))?;
        names.push(name);
        s.delete_objects(&names)
    }

    fn create_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let s = &self.0;
        s.ensure_container()?;
        let name = s.full(key);
        let headers = [("If-None-Match", "*"), ("Content-Type", "application/json")];
        let r =
            s.client.request("PUT", Target::Object(s.container(), &name), "", &headers, data)?;
        match r.status {
            201 => Ok(true),
            412 => Ok(false),
            st => Err(s.fail(&format!("creating {name}"), st)),
        }
    }
}

/// The segments of a DLO, read one object at a time (each GET retried on its own).
struct Segments {
    swift: Arc<Swift>,
    container: String,
    names: std::collections::VecDeque<String>,
    current: io::Cursor<Vec<u8>>,
}

impl Read for Segments {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(name) = self.names.pop_front() else { return Ok(0) };
            let data = self.swift.get_object(&self.container, &name)?.ok_or_else(|| {
                Error::corrupt(format!(
                    "segment {name} vanished from {} while being read",
                    self.swift.where_()
                ))
            })?;
            self.current = io::Cursor::new(data);
        }
    }
}
