//! One backup: choose the level and parent, scan against the parent's snapshot, stream
//! tar → compress → segment → storage, then store the snapshot and, last, the metadata, which
//! makes the backup visible. A failure before that leaves nothing that looks like a backup.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::catalog::{
    self, Backup, BackupId, BackupMeta, BackupStats, Layout, LevelPolicy, Next, SegmentMeta,
};
use crate::compress::Compression;
use crate::crypt::{self, DecryptKey, Encryption, Format};
use crate::error::{Error, Result};
use crate::freeze::{self, FreezeOptions};
use crate::incremental::dump::{self, DumpOptions};
use crate::incremental::scan::{self, ScanOptions, ScanStats, Warning};
use crate::incremental::snapshot::{Snapshot, Timespec};
use crate::interrupt::Interruptible;
use crate::pipe::Pipe;
use crate::progress::{self, Phase};
use crate::segment::{Segmenter, StreamReport};
use crate::storage::{SharedUpload, StorageWrite};
use crate::tar::TarWriter;

mod parent;

/// Everything one backup needs to know.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub path: PathBuf,
    pub hostname: String,
    pub backup_name: String,
    pub compression: Compression,
    pub segment_size: usize,
    pub policy: LevelPolicy,
    pub scan: ScanOptions,
    pub dump: DumpOptions,
    /// Compression threads.
    pub threads: usize,
    /// Walk and compress, but store nothing.
    pub dry_run: bool,
    /// Unix seconds to use as "now"; only tests set it.
    pub now: Option<i64>,
    /// Encrypt the data (and, in the age format, the snapshot too).
    pub encryption: Option<Encryption>,
    /// Reads the parent's encrypted snapshot; `None` when only recipients are known.
    pub decrypt_key: Option<Arc<DecryptKey>>,
    /// Plaintext copies of snapshots encrypted to recipients, so that the next level can be
    /// taken by a host that cannot decrypt its own backups.
    pub state_dir: Option<PathBuf>,
    /// Compute freezer-agent's consistency checksum of the tree first (`--consistency-check`).
    pub consistency_check: bool,
    /// Hooks and the snapshot around the scan.
    pub freeze: FreezeOptions,
}

#[cfg(test)]
impl BackupOptions {
    /// A level-0, uncompressed, unencrypted backup of `path` as host `h`, name `b`.
    pub(crate) fn for_test(path: PathBuf) -> BackupOptions {
        BackupOptions {
            path,
            hostname: "h".into(),
            backup_name: "b".into(),
            compression: Compression::None,
            segment_size: 1 << 20,
            policy: LevelPolicy::default(),
            scan: ScanOptions::default(),
            dump: DumpOptions::default(),
            threads: 1,
            dry_run: false,
            now: None,
            encryption: None,
            decrypt_key: None,
            state_dir: None,
            consistency_check: false,
            freeze: FreezeOptions::default(),
        }
    }
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupReport {
    pub id: BackupId,
    pub parent: Option<BackupId>,
    pub layout: Layout,
    pub scan: ScanStats,
    pub members: u64,
    pub bytes_read: u64,
    pub unreadable: u64,
    pub stored: u64,
    pub warnings: Vec<Warning>,
    /// freezer-agent's checksum of the tree, with `consistency_check`.
    pub consistency_checksum: Option<String>,
    /// What the database mode recorded (`--mode mysql|mongo`), as in the metadata.
    pub database: Option<crate::catalog::DatabaseMeta>,
    pub seconds: f64,
    pub dry_run: bool,
    /// What failed around a backup that is complete: the post-exec hook, removing the
    /// snapshot.
    pub aftermath: Vec<Error>,
}

/// Run one backup into `storage`. With `lock`, the backup stops before it becomes visible if
/// the lock was lost meanwhile (taken over by another run, or not refreshed for too long).
pub fn run(
    storage: &dyn StorageWrite,
    opts: &BackupOptions,
    lock: Option<&crate::lock::Lock>,
) -> Result<BackupReport> {
    let started = Instant::now();
    let start = now_timespec();
    let now = opts.now.unwrap_or(start.sec);
    let layout = Layout::new(&opts.hostname, &opts.backup_name);
    check_limits(storage, opts.segment_size as u64)?;
    let all = catalog::load(storage, &layout)?;
    let mut next = catalog::next_backup(&all, &opts.policy, now);
    if let Some(p) = next.parent
        && p.meta.encryption
        && opts.encryption.is_none()
    {
        return Err(Error::usage(format!(
            "the chain {} of {} is encrypted and no key was given: add --encrypt-pass-file FILE \
             (or --encrypt-recipient) to extend it (freezer never continues an encrypted chain \
             in plaintext), or back up once without --incremental/--max-level/--always-level \
             to start a new, unencrypted chain",
            p.id.level_zero,
            layout.host_backup()
        )));
    }
    if let Some(p) = next.parent
        && let Some(problem) = damaged_ancestry(storage, &layout, &all, p)?
    {
        log::warn!("{problem}; starting a new chain (level 0). Run `freezer verify` for details");
        next = Next { parent: None, level: 0 };
    }
    let old = match next.parent {
        Some(p) => parent::parent_snapshot(storage, &layout, p, opts)?,
        None => None,
    };
    if next.parent.is_some() && old.is_none() {
        next = Next { parent: None, level: 0 };
    }
    let parent: Option<&Backup> = next.parent;
    log::debug!(
        "{}: {} backups stored; next is level {} on {}",
        layout.host_backup(),
        all.len(),
        next.level,
        parent.map(|p| p.id.name()).unwrap_or_else(|| "nothing (new chain)".into())
    );
    let mut id = catalog::new_id(&all, &next, now);
    // A listing, not `exists`: a data dir is a prefix, never an object (one request, not two).
    while !storage.list(&layout.data_dir(&id))?.is_empty() {
        // A crashed run left data without metadata in this second: take the next one.
        id.timestamp += 1;
        if id.level == 0 {
            id.level_zero = id.timestamp;
        }
    }

    // From here on the source is held still (hooks, snapshot) until `held` is released.
    let held = freeze::hold(&opts.freeze, &opts.path, opts.dry_run)?;
    let scan_opts = scan_options(opts, &held);
    let (consistency, plan) = read_tree(opts, &held, &scan_opts, old)?;
    crate::interrupt::check()?;
    progress::set_phase(Phase::Backing);

    if opts.dry_run {
        let enc = opts.compression.encoder(Counter(0), opts.threads).map_err(enc_err)?;
        let mut tar = TarWriter::new(enc);
        let report = dump::dump(&plan, &mut tar, &opts.dump)?;
        let stored = tar.finish().and_then(|e| e.finish()).map_err(enc_err)?.0;
        held.check()?;
        let mut r = finish_report(id, parent, layout, plan, report, stored, started, true);
        r.consistency_checksum = consistency;
        r.database = held.database().cloned();
        r.aftermath = held.release();
        return Ok(r);
    }

    let upload = SharedUpload::new(storage.create(&layout.data_key(&id))?);
    let stored = store(&plan, opts, upload.clone()).and_then(|(report, stream)| {
        let snapshot = plan.encode_snapshot(start, &report.dropped);
        let stored_snapshot = match &opts.encryption {
            // The snapshot lists every file name: the age format hides it too. freezer-agent's
            // openssl format leaves it plain, as the agent does, so the agent can continue a
            // chain.
            Some(e) if e.format == Format::Age => {
                if opts.decrypt_key.is_none()
                    && let Err(problem) = parent::save_state(opts, storage, &layout, &id, &snapshot)
                {
                    // Without the copy the next run cannot read this snapshot: it would be a
                    // silent level 0 every night.
                    if opts.policy.incremental {
                        return Err(Error::io(problem.0, problem.1).context(
                            "incremental backups encrypted to recipients need a writable state \
                             directory ($STATE_DIRECTORY, $XDG_STATE_HOME/freezer or \
                             ~/.local/state/freezer; with systemd: StateDirectory=freezer)",
                        ));
                    }
                    log::warn!("{}: {}", problem.0, problem.1);
                }
                crypt::encrypt_bytes(Format::Age, &e.key, &snapshot)?
            }
            _ => snapshot,
        };
        storage.put(&layout.engine_metadata_key(&id), &stored_snapshot)?;
        Ok((report, stream, stored_snapshot))
    });
    let (report, stream, stored_snapshot) = match stored.and_then(|x| held.check().map(|()| x)) {
        Ok(x) => x,
        Err(e) => {
            discard(storage, &layout, &id, &upload);
            return Err(e.context(format!("backup of {} failed", opts.path.display())));
        }
    };
    let mut meta = metadata(
        opts,
        storage.kind(),
        &id,
        parent,
        &stream,
        &stored_snapshot,
        &plan.stats,
        &report,
        started,
    );
    meta.consistency_checksum = consistency.clone();
    meta.database = held.database().cloned();
    // With what the snapshot itself put in the tree: a restore must not miss it.
    meta.excludes = Some(scan_opts.excludes.describe());
    if let Some(lock) = lock.filter(|l| l.is_lost()) {
        discard(storage, &layout, &id, &upload);
        return Err(Error::new(
            crate::ErrorKind::Locked,
            format!(
                "backup of {} stopped before becoming visible: its lock {} was lost (another \
                 freezer took it over, or it could not be refreshed), so another run may have \
                 extended the chain meanwhile; run the backup again",
                opts.path.display(),
                lock.key()
            ),
        ));
    }
    if let Err(e) = publish(storage, &layout.metadata_key(&id), meta.to_json()?.as_bytes()) {
        discard(storage, &layout, &id, &upload);
        return Err(e.context(format!("backup of {} failed", opts.path.display())));
    }
    let mut r = finish_report(id, parent, layout, plan, report, stream.size, started, false);
    r.consistency_checksum = consistency;
    r.database = held.database().cloned();
    r.aftermath = held.release();
    Ok(r)
}

/// The scan's options for reading where `held` says.
fn scan_options(opts: &BackupOptions, held: &freeze::Held) -> ScanOptions {
    let mut scan_opts = opts.scan.clone();
    scan_opts.dev_alias = held.dev_alias();
    if let Some(own) = held.own_entry() {
        scan_opts.excludes.add_exact(own);
    }
    scan_opts
}

/// Checksum (with `--consistency-check`) and scan the tree where `held` says to read it.
fn read_tree(
    opts: &BackupOptions,
    held: &freeze::Held,
    scan_opts: &ScanOptions,
    old: Option<Snapshot>,
) -> Result<(Option<String>, scan::Plan)> {
    let root = held.read_root();
    let cannot = |e| {
        let from = match root == opts.path {
            true => String::new(),
            false => format!(" (reading its snapshot at {})", root.display()),
        };
        Error::io(format!("cannot read the path to back up {}{from}", opts.path.display()), e)
    };
    // As freezer-agent: the checksum of the tree as it is before the backup reads it.
    let consistency = match opts.consistency_check {
        true => {
            Some(crate::checksum::compute(root, &scan_opts.excludes, !scan_opts.follow_symlinks)?)
        }
        false => None,
    };
    progress::set_phase(Phase::Scanning);
    let plan = scan::scan(root, old, scan_opts).map_err(cannot)?;
    for w in &plan.warnings {
        log::warn!("{}: {}", shown(&opts.path, root, &w.path).display(), w.message);
    }
    Ok((consistency, plan))
}

/// A path under the snapshot's `root`, shown as the same path in the origin.
fn shown(origin: &Path, root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix(root) {
        Ok(rel) if root != origin => origin.join(rel),
        _ => p.to_path_buf(),
    }
}

/// What is wrong with the stored data of `parent` or its ancestors, checked cheaply: the size
/// each holds in the storage against its metadata (one stat or HEAD per level). Backups that
/// recorded no size (freezer-agent's) cannot be checked so.
fn damaged_ancestry(
    storage: &dyn StorageWrite,
    layout: &Layout,
    all: &[Backup],
    parent: &Backup,
) -> Result<Option<String>> {
    let chain = match catalog::ancestry(all, layout, parent) {
        Ok(chain) => chain,
        Err(e) => return Ok(Some(e.to_string())),
    };
    for b in chain {
        let Some(recorded) = b.meta.data_size else { continue };
        let key = layout.data_key(&b.id);
        let stored = storage.size(&key)?;
        if stored != Some(recorded) {
            let stored = stored.map_or("nothing".to_string(), |s| format!("{s} bytes"));
            return Ok(Some(format!(
                "level {} of the chain ({}/{}) is damaged: {stored} stored where {recorded} \
                 were written",
                b.id.level,
                layout.host_backup(),
                b.id.name()
            )));
        }
    }
    Ok(None)
}

/// Refuse a segment size the storage cannot hold before anything is read or written.
fn check_limits(storage: &dyn StorageWrite, segment_size: u64) -> Result<()> {
    let limits = storage.limits()?;
    let where_ = storage.describe();
    if let Some(max) = limits.max_segment_size.filter(|&max| segment_size > max) {
        return Err(Error::usage(format!(
            "--max-segment-size {segment_size} is larger than the largest object {where_} \
             accepts ({max} bytes); give --max-segment-size {max} or less"
        )));
    }
    if let Some(min) = limits.min_segment_size.filter(|&min| segment_size < min) {
        return Err(Error::usage(format!(
            "--max-segment-size {segment_size} is smaller than the smallest segment {where_} \
             accepts ({min} bytes); give --max-segment-size {min} or more"
        )));
    }
    Ok(())
}

/// Store the metadata, which makes the backup visible. When the storage reports a failure,
/// the object may still have been stored (only the reply was lost): read it back; whole, the
/// backup is complete; otherwise remove it, so that a failed run never leaves a visible backup.
fn publish(storage: &dyn StorageWrite, key: &str, json: &[u8]) -> Result<()> {
    let Err(e) = storage.put(key, json) else { return Ok(()) };
    let _cleanup = crate::interrupt::shield();
    match storage.get(key) {
        Ok(Some(stored)) if stored == json => {
            log::warn!("storing {key} reported a failure ({e}), but it is stored whole");
            Ok(())
        }
        _ => match storage.delete(key) {
            Ok(()) => Err(e),
            Err(gone) => Err(e.context(format!(
                "storing {key} failed, and removing it failed too ({gone}): the backup may be \
                 visible though incomplete; check with `freezer list` and `freezer verify`"
            ))),
        },
    }
}

/// A failed backup leaves nothing: abort the data upload (Swift: delete its segments) and
/// remove a snapshot object that may have been stored. Failures here are only logged: the
/// backup's own error is what the user must see, and data without metadata is invisible
/// and removed by `prune --orphans`.
fn discard(storage: &dyn StorageWrite, layout: &Layout, id: &BackupId, upload: &SharedUpload) {
    let _cleanup = crate::interrupt::shield();
    if let Err(e) = upload.abort_if_open() {
        log::warn!("could not remove the failed backup's data: {e}");
    }
    if let Err(e) = storage.delete(&layout.data_dir(id)) {
        log::warn!("could not remove {}: {e}", layout.data_dir(id));
    }
}

/// Stream the scanned tree through the pipeline into `upload` and commit it.
fn store(
    plan: &scan::Plan,
    opts: &BackupOptions,
    upload: SharedUpload,
) -> Result<(dump::DumpReport, StreamReport)> {
    // Three threads, like `tar | zstd | age > file`: walk and tar; feed the compressor (whose
    // workers are more threads); encrypt, hash and store segments. age writes 64 KiB chunks:
    // gather them so the storage sees few, larger writes.
    let segmenter =
        io::BufWriter::with_capacity(1 << 20, Segmenter::new(Box::new(upload), opts.segment_size));
    let sealed = crypt::stage(opts.encryption.as_ref(), segmenter)?;
    let store = Pipe::new(sealed, 1 << 20, 8).map_err(enc_err)?;
    let enc = opts.compression.encoder(store, opts.threads).map_err(enc_err)?;
    let mut tar = TarWriter::new(Interruptible(Pipe::new(enc, 256 << 10, 8).map_err(enc_err)?));
    let dumped = dump::dump(plan, &mut tar, &opts.dump);
    let written = dumped.and_then(|report| {
        let segmenter = tar
            .finish()
            .and_then(|i| i.0.finish())
            .and_then(|enc| enc.finish())
            .and_then(Pipe::finish)
            .and_then(|sealed| sealed.finish())
            .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
            .map_err(Error::from)?;
        Ok((report, segmenter))
    });
    // On failure the pipeline, dropped here, has stopped all its threads; the caller aborts.
    let (report, segmenter) = written?;
    let (stream, upload) = segmenter.finish()?;
    upload.commit()?;
    Ok((report, stream))
}

#[allow(clippy::too_many_arguments)]
fn metadata(
    opts: &BackupOptions,
    storage_kind: &str,
    id: &BackupId,
    parent: Option<&Backup>,
    stream: &StreamReport,
    snapshot: &[u8],
    scan: &ScanStats,
    dump: &dump::DumpReport,
    started: Instant,
) -> BackupMeta {
    use sha2::Digest;
    BackupMeta {
        format: Some(catalog::FORMAT),
        tool: Some(format!("freezer {}", env!("CARGO_PKG_VERSION"))),
        hostname: Some(opts.hostname.clone()),
        backup_name: Some(opts.backup_name.clone()),
        path_to_backup: Some(opts.path.display().to_string()),
        level: Some(id.level),
        time_stamp: Some(id.timestamp),
        level_zero_timestamp: Some(id.level_zero),
        parent: parent.map(|p| p.id.name()),
        data_size: Some(stream.size),
        data_sha256: None,
        segment_size: Some(opts.segment_size as u64),
        segments: Some(
            stream
                .segments
                .iter()
                .map(|s| SegmentMeta { size: s.size, sha256: s.sha256.clone() })
                .collect(),
        ),
        engine_metadata_sha256: Some(hex::encode(sha2::Sha256::digest(snapshot))),
        stats: Some(BackupStats {
            dirs: scan.dirs,
            files_new: scan.files_new,
            files_changed: scan.files_changed,
            files_unchanged: scan.files_unchanged,
            unreadable: dump.unreadable,
            bytes_read: dump.bytes_read,
            duration_secs: started.elapsed().as_secs_f64(),
            ..Default::default()
        }),
        encryption_format: opts.encryption.as_ref().map(|e| e.format.name().to_string()),
        storage: Some(storage_kind.to_string()),
        excludes: Some(opts.scan.excludes.describe()),
        ..BackupMeta::new(opts.compression.name(), opts.encryption.is_some())
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_report(
    id: BackupId,
    parent: Option<&Backup>,
    layout: Layout,
    plan: scan::Plan,
    report: dump::DumpReport,
    stored: u64,
    started: Instant,
    dry_run: bool,
) -> BackupReport {
    let mut warnings = plan.warnings;
    warnings.extend(report.warnings);
    BackupReport {
        id,
        parent: parent.map(|p| p.id),
        layout,
        scan: plan.stats,
        members: report.members,
        bytes_read: report.bytes_read,
        unreadable: report.unreadable,
        stored,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
        dry_run,
        consistency_checksum: None,
        database: None,
        aftermath: Vec::new(),
    }
}

fn enc_err(e: io::Error) -> Error {
    Error::from(e).context("compression failed")
}

fn now_timespec() -> Timespec {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }
}

/// Counts what a dry run would store.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
