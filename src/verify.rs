//! Verify: re-read stored backups and check them against what their metadata recorded at
//! backup time, without restoring anything.
//!
//! For each backup: the metadata parses; `engine_metadata` matches its sha256 and is a snapshot
//! file; the data matches its recorded size, whole-stream sha256 and per-segment sha256 (a
//! flipped byte names its segment, a short object the first missing one); the content
//! decompresses and walks as a tar archive to the end (the only check of freezer-agent's
//! backups, which record no hashes); and its parent exists, so that the chain restores.
//! Damage is reported per backup and never stops the run: an operator wants the whole list.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};

use crate::catalog::{self, BackupId, BackupMeta, Layout, format_local};
use crate::compress::Compression;
use crate::error::{Error, ErrorKind, Result};
use crate::incremental::snapshot::Snapshot;
use crate::storage::Storage;

mod stream;
#[cfg(test)]
mod tests;

use crate::segment::Fetcher;
use stream::{Checker, Shared, Source};

/// Turns a backup's stored (encrypted) stream into its plaintext, given the backup's metadata
/// (which names the encryption format).
pub type Decrypt =
    dyn Fn(&BackupMeta, Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> + Send + Sync;

/// Which backups of each layout to check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Select {
    /// Every backup of every chain.
    #[default]
    All,
    /// What a restore would replay now: the newest backup of the newest chain and its ancestors.
    Newest,
    /// What a restore at this time (Unix seconds) would replay (`--restore-from-date`).
    At(i64),
}

/// How to verify.
#[derive(Default)]
pub struct VerifyOptions {
    pub select: Select,
    /// Decrypts encrypted backups; without it their content is not read (hashes only).
    pub decrypt: Option<Box<Decrypt>>,
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("select", &self.select)
            .field("decrypt", &self.decrypt.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// The verdict on one backup.
#[derive(Clone, Debug)]
pub struct BackupCheck {
    pub host_backup: String,
    pub id: BackupId,
    /// No problems.
    pub ok: bool,
    /// What is wrong, each naming the backup (`<HB>/<L>_<T>`) and its level.
    pub problems: Vec<String>,
    /// What could not be checked, and why (encrypted without a key, no hashes recorded).
    pub notes: Vec<String>,
    /// Stored bytes read.
    pub bytes: u64,
    /// Archive members walked; `None` when the content was not read.
    pub members: Option<u64>,
}

/// The verdict on every backup checked, chain by chain, level 0 first.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub checked: Vec<BackupCheck>,
}

impl VerifyReport {
    /// Whether every backup checked is intact and restorable.
    pub fn ok(&self) -> bool {
        self.checked.iter().all(|c| c.ok)
    }

    /// The backups with problems.
    pub fn damaged(&self) -> impl Iterator<Item = &BackupCheck> {
        self.checked.iter().filter(|c| !c.ok)
    }
}

/// Check the backups of `layouts` selected by `opts`. Damage and storage errors reading a
/// backup are problems of that backup in the report; an error is returned only when a layout
/// cannot be listed, on SIGTERM/SIGINT, or when nothing matched (`NotFound`).
pub fn verify(
    storage: &dyn Storage,
    layouts: &[Layout],
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for layout in layouts {
        let found = load(storage, layout)?;
        let mut status: HashMap<BackupId, Status> = HashMap::new();
        for entry in select(&found, opts.select) {
            crate::interrupt::check()?;
            let mut check = check_backup(storage, layout, entry, opts.decrypt.as_deref())?;
            let mut state = if check.problems.is_empty() { Status::Ok } else { Status::Damaged };
            if let Some(problem) = chain_problem(&found, &status, entry) {
                check.problems.push(format!("{}: {problem}", describe(layout, &entry.id)));
                if state == Status::Ok {
                    state = Status::Unrestorable;
                }
            }
            status.insert(entry.id, state);
            check.ok = check.problems.is_empty();
            report.checked.push(check);
        }
    }
    if report.checked.is_empty() {
        let names: Vec<&str> = layouts.iter().map(Layout::host_backup).collect();
        let when = match opts.select {
            Select::At(at) => format!(" at or before {}", format_local(at)),
            _ => String::new(),
        };
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no backup of {}{when} in {}; check --hostname, --backup-name and the storage",
                if names.is_empty() { "anything".to_string() } else { names.join(", ") },
                storage.describe()
            ),
        ));
    }
    Ok(report)
}

/// `backup <HB>/<L>_<T> (level L)`.
fn describe(layout: &Layout, id: &BackupId) -> String {
    format!("backup {}/{} (level {})", layout.host_backup(), id.name(), id.level)
}

/// One backup found in the metadata tree; its metadata may be unreadable.
struct Entry {
    id: BackupId,
    meta: std::result::Result<BackupMeta, String>,
}

/// Whether a backup checked so far restores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    /// Its own data or metadata is damaged.
    Damaged,
    /// Intact, but an ancestor is missing or damaged.
    Unrestorable,
}

/// Every backup of `layout`, sorted by chain then time. Unlike [`catalog::load`], metadata that
/// cannot be read or parsed is kept as that backup's problem instead of failing the listing.
fn load(storage: &dyn Storage, layout: &Layout) -> Result<Vec<Entry>> {
    let mut found = Vec::new();
    for id in catalog::ids(storage, layout)? {
        let key = layout.metadata_key(&id);
        let meta = match storage.get(&key) {
            Ok(Some(bytes)) => BackupMeta::from_json(&bytes, &key).map_err(|e| e.to_string()),
            Ok(None) => {
                log::warn!("skipping {key}: it has no metadata (unfinished or failed backup)");
                continue;
            }
            Err(e) => Err(format!("its metadata cannot be read: {e}")),
        };
        found.push(Entry { id, meta });
    }
    found.sort_by_key(|e| (e.id.level_zero, e.id.timestamp, e.id.level));
    Ok(found)
}

/// The entry `e` was taken on top of: [`catalog::parent_of`]'s rule (the recorded parent, else
/// the newest level L-1 before it in the chain), over entries whose metadata may be unreadable.
fn parent<'a>(found: &'a [Entry], e: &Entry) -> Option<&'a Entry> {
    if e.id.level == 0 {
        return None;
    }
    let mut candidates = found.iter().filter(|p| {
        p.id.level_zero == e.id.level_zero
            && p.id.level + 1 == e.id.level
            && p.id.timestamp < e.id.timestamp
    });
    match e.meta.as_ref().ok().and_then(|m| m.parent.as_ref()) {
        Some(name) => candidates.find(|p| p.id.name() == *name),
        None => candidates.max_by_key(|p| p.id.timestamp),
    }
}

/// The entries to check: all, or the chain a restore would replay (as
/// [`catalog::restore_chain`] picks it, stopping where a level is missing).
fn select(found: &[Entry], which: Select) -> Vec<&Entry> {
    let at = match which {
        Select::All => return found.iter().collect(),
        Select::Newest => None,
        Select::At(at) => Some(at),
    };
    let fits = |t: i64| at.is_none_or(|at| t <= at);
    let Some(level_zero) = found.iter().map(|e| e.id.level_zero).filter(|&t| fits(t)).max() else {
        return Vec::new();
    };
    let head = found
        .iter()
        .filter(|e| e.id.level_zero == level_zero && fits(e.id.timestamp))
        .max_by_key(|e| (e.id.timestamp, e.id.level));
    let mut chain: Vec<&Entry> = std::iter::successors(head, |e| parent(found, e)).collect();
    chain.reverse();
    chain
}

/// Why `e` cannot be restored even if its own data is intact: its parent is missing, or is
/// damaged or unrestorable itself (`status` holds the verdicts on backups checked before).
fn chain_problem(found: &[Entry], status: &HashMap<BackupId, Status>, e: &Entry) -> Option<String> {
    let level = e.id.level;
    if level == 0 {
        return None;
    }
    let Some(p) = parent(found, e) else {
        let wanted = match e.meta.as_ref().ok().and_then(|m| m.parent.as_ref()) {
            Some(name) => format!("its parent {name} is not in chain {}", e.id.level_zero),
            None => format!("chain {} has no level {} before it", e.id.level_zero, level - 1),
        };
        return Some(format!(
            "level {} is missing: level {level} cannot be restored ({wanted})",
            level - 1
        ));
    };
    let name = p.id.name();
    match status.get(&p.id) {
        Some(Status::Damaged) => Some(format!(
            "level {} ({name}) is damaged: level {level} cannot be restored",
            level - 1
        )),
        Some(Status::Unrestorable) => Some(format!(
            "level {} ({name}) cannot be restored, so neither can level {level}",
            level - 1
        )),
        _ => None,
    }
}

/// Check one backup's own objects; the error is only for an interrupt.
fn check_backup(
    storage: &dyn Storage,
    layout: &Layout,
    entry: &Entry,
    decrypt: Option<&Decrypt>,
) -> Result<BackupCheck> {
    let who = describe(layout, &entry.id);
    let mut check = BackupCheck {
        host_backup: layout.host_backup().to_string(),
        id: entry.id,
        ok: false,
        problems: Vec::new(),
        notes: Vec::new(),
        bytes: 0,
        members: None,
    };
    let meta = match &entry.meta {
        Ok(meta) => meta,
        Err(problem) => {
            check.problems.push(format!("{who}: {problem}"));
            return Ok(check);
        }
    };
    let mut problems = Vec::new();
    if meta.engine_name != catalog::ENGINE {
        problems.push(format!(
            "it was made by the '{}' engine; only 'tar' backups can be checked and restored",
            meta.engine_name
        ));
    } else {
        problems.extend(check_engine_metadata(storage, layout, entry.id, meta));
        check_data(storage, layout, entry.id, meta, decrypt, &mut check, &mut problems)?;
    }
    if meta.data_sha256.is_none() && meta.segments.is_none() {
        check.notes.push(format!(
            "{who}: no hashes were recorded (made by freezer-agent?): only reading the content \
             can find damage"
        ));
    }
    check.problems.extend(problems.into_iter().map(|p| format!("{who}: {p}")));
    check.ok = check.problems.is_empty();
    Ok(check)
}

/// `engine_metadata`: present, matching its hash, a snapshot file.
fn check_engine_metadata(
    storage: &dyn Storage,
    layout: &Layout,
    id: BackupId,
    meta: &BackupMeta,
) -> Option<String> {
    use sha2::Digest;
    let key = layout.engine_metadata_key(&id);
    let bytes = match storage.get(&key) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Some(format!(
                "engine_metadata is missing ({key}): no incremental can be taken on it"
            ));
        }
        Err(e) => return Some(format!("engine_metadata cannot be read: {e}")),
    };
    if let Some(expected) = &meta.engine_metadata_sha256 {
        let got = hex::encode(sha2::Sha256::digest(&bytes));
        if !got.eq_ignore_ascii_case(expected) {
            return Some(format!(
                "engine_metadata sha256 mismatch (recorded {expected}, read {got})"
            ));
        }
    }
    Snapshot::parse(&bytes)
        .err()
        .map(|e| format!("engine_metadata is not a valid GNU tar snapshot file: {e}"))
}

/// The data object: hashes as it is read, content walked when it can be read.
fn check_data(
    storage: &dyn Storage,
    layout: &Layout,
    id: BackupId,
    meta: &BackupMeta,
    decrypt: Option<&Decrypt>,
    check: &mut BackupCheck,
    problems: &mut Vec<String>,
) -> Result<()> {
    let who = describe(layout, &id);
    let key = layout.data_key(&id);
    let stored_size = match storage.size(&key) {
        Ok(Some(size)) => size,
        Ok(None) => {
            problems.push(format!("data is missing ({key})"));
            return Ok(());
        }
        Err(e) => {
            problems.push(format!("data cannot be opened: {e}"));
            return Ok(());
        }
    };
    std::thread::scope(|scope| {
        let source = match &meta.segments {
            Some(segments) => {
                let ahead = storage.parallel_reads();
                Source::Segments(Fetcher::start(scope, storage, &key, segments, ahead))
            }
            None => match storage.open(&key) {
                Ok(raw) => Source::Whole(raw),
                Err(e) => {
                    problems.push(format!("data cannot be opened: {e}"));
                    return Ok(());
                }
            },
        };
        let shared = Shared::new(Checker::new(source, meta, Some(stored_size)));
        let content = read_content(meta, shared.clone(), decrypt, &who);
        crate::interrupt::check()?;
        let mut checker = shared.lock();
        checker.drain();
        crate::interrupt::check()?;
        check.bytes = checker.total();
        match content {
            Content::Read(members) => check.members = Some(members),
            Content::Damaged(problem) if !checker.failed() => problems.push(problem),
            Content::Damaged(_) => {} // Only the storage failure echoed; reported below.
            Content::Skipped(note) => check.notes.push(note),
        }
        problems.extend(checker.problems(meta));
        Ok(())
    })
}

/// What reading the content found.
enum Content {
    /// Walked to the end: this many archive members.
    Read(u64),
    Damaged(String),
    /// Not read (encrypted without a key), with a note saying so.
    Skipped(String),
}

fn read_content(
    meta: &BackupMeta,
    stored: Shared,
    decrypt: Option<&Decrypt>,
    who: &str,
) -> Content {
    let codec = match Compression::parse(&meta.compression) {
        Ok(codec) => codec,
        Err(_) => {
            return Content::Damaged(format!(
                "its metadata records an unknown compression '{}'",
                meta.compression
            ));
        }
    };
    let plain: Box<dyn Read + Send> = match (meta.encryption, decrypt) {
        (false, _) => Box::new(stored),
        (true, Some(decrypt)) => match decrypt(meta, Box::new(stored)) {
            Ok(plain) => plain,
            Err(e) => return Content::Damaged(format!("it cannot be decrypted: {e}")),
        },
        (true, None) => {
            return Content::Skipped(format!(
                "{who}: encrypted and no key was given: its stored bytes were checked against \
                 the recorded hashes, but the content was not read"
            ));
        }
    };
    match walk(codec, plain) {
        Ok(members) => Content::Read(members),
        Err(e) => Content::Damaged(format!("the content is damaged: {e}")),
    }
}

/// Decompress and read every archive member to the end; the member count.
fn walk(codec: Compression, plain: Box<dyn Read + Send>) -> Result<u64> {
    // Sequential: verify checks the stream, speed matters less than for a restore.
    let decoded = codec.decoder(plain, 1)?;
    let mut archive = ::tar::Archive::new(decoded);
    // As restore does (GNU tar --ignore-zeros): read past end-of-archive blocks to the end.
    archive.set_ignore_zeros(true);
    let mut members = 0u64;
    let mut last = String::new();
    let after = |members: u64, last: &str, e: io::Error| {
        let at = if members == 0 {
            "at the first archive member".to_string()
        } else {
            format!("after {members} archive members (the last was {last:?})")
        };
        Error::from(e).context(at)
    };
    for entry in archive.entries().map_err(|e| after(0, "", e))? {
        crate::interrupt::check()?;
        let mut entry = entry.map_err(|e| after(members, &last, e))?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        io::copy(&mut entry, &mut io::sink()).map_err(|e| after(members, &last, e))?;
        members += 1;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| after(members, &last, e))?;
    Ok(members)
}
