//! Restore: pick the chain for a date, then stream each level (0 first) from the storage,
//! verify it against the recorded hash, decompress it and replay its members and dumpdirs into a
//! [`Target`] that refuses anything leaving the restore directory.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::catalog::{self, Backup, BackupId, Layout};
use crate::compress::Compression;
use crate::crypt::{self, DecryptKey, Format, Md};
use crate::error::{Error, ErrorKind, Result};
use crate::extract::{Meta, Special, Target};
use crate::incremental::dumpdir::Dumpdir;
use crate::pipe::ReadAhead;
use crate::progress::{self, Counting, Phase};
use crate::segment::{Fetcher, VerifiedReader, VerifyingReader};
use crate::storage::Storage;

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub hostname: String,
    pub backup_name: String,
    pub target: PathBuf,
    /// Unix seconds: restore the state as of this time (`--restore-from-date`); newest if None.
    pub at: Option<i64>,
    /// Allow a non-empty target (`--overwrite`).
    pub overwrite: bool,
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// Decrypts encrypted backups.
    pub key: Option<Arc<DecryptKey>>,
    /// Force openssl's key-derivation digest (`--openssl-md`) instead of detecting it.
    pub openssl_md: Option<Md>,
    /// freezer-agent's checksum to compare the restored tree with (`--consistency-checksum`).
    pub consistency_checksum: Option<String>,
    /// Threads that decompress (the gzip members freezer writes).
    pub threads: usize,
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub chain: Vec<BackupId>,
    pub layout: Layout,
    pub members: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// What could not be restored as the archive says (the restore went on).
    pub problems: Vec<String>,
}

/// Restore the chain selected by `opts` from `storage`.
pub fn run(storage: &dyn Storage, opts: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let layout = Layout::new(&opts.hostname, &opts.backup_name);
    let found = catalog::load_catalog(storage, &layout)?;
    let all = found.backups;
    if all.is_empty() && found.damaged.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no backup named '{}' of host '{}' in {}; check --backup-name, --hostname and --container",
                opts.backup_name,
                opts.hostname,
                storage.describe()
            ),
        ));
    }
    let chain = catalog::restore_chain(&all, &layout, opts.at);
    let chain = not_past_damage(chain, &all, &found.damaged, &layout, opts.at)?;
    log::debug!(
        "restoring {}: {:?}",
        layout.host_backup(),
        chain.iter().map(|b| b.id.name()).collect::<Vec<_>>()
    );
    for b in &chain {
        check_readable(&layout, b, opts.key.is_some())?;
    }
    // A wrong key must fail before anything in the target is written or deleted.
    for b in &chain {
        if b.meta.encryption {
            with_level(storage, &layout, b, opts, |_| Ok(()))?;
        }
    }
    let mut report = RestoreReport {
        chain: chain.iter().map(|b| b.id).collect(),
        layout: layout.clone(),
        members: 0,
        bytes: 0,
        seconds: 0.0,
        problems: Vec::new(),
    };
    if opts.dry_run {
        for b in &chain {
            let (members, bytes) = with_level(storage, &layout, b, opts, |level| {
                walk(level).map_err(|e| damaged(&layout, b, e))
            })?;
            report.members += members;
            report.bytes += bytes;
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let mut target = Target::open(&opts.target)?;
    if !opts.overwrite && !target.is_empty()? {
        return Err(Error::new(
            ErrorKind::TargetNotEmpty,
            format!(
                "restore directory {} is not empty; restore into an empty directory or add --overwrite \
                 (files the backup does not contain are then deleted from the directories it restores)",
                opts.target.display()
            ),
        ));
    }
    progress::set_phase(Phase::Restoring);
    progress::set_total(chain.iter().filter_map(|b| b.meta.data_size).sum());
    let mut kept = Vec::new();
    for (i, b) in chain.iter().enumerate() {
        // The last level lists every entry of every directory: what it calls unchanged must
        // exist once the chain is restored.
        let last = (i + 1 == chain.len()).then_some(&mut kept);
        let (members, bytes) =
            with_level(storage, &layout, b, opts, |level| replay(level, &mut target, last))
                .map_err(|e| e.context(format!("restore of {} failed", describe(&layout, b))))?;
        report.members += members;
        report.bytes += bytes;
    }
    if let Some(head) = chain.last() {
        check_kept(&mut target, head, &kept)?;
    }
    report.problems = target.problems().to_vec();
    if let Some(recorded) = &opts.consistency_checksum
        && !crate::checksum::matches(&opts.target, recorded)?
    {
        let got = crate::checksum::compute(&opts.target, &Default::default(), true)?;
        return Err(Error::corrupt(format!(
            "Backup Consistency Check failed: backup checksum ({recorded}) and restore checksum \
             ({got}) did not match"
        )));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The point asked for must not be a damaged backup (or lie past one): restoring an older
/// state instead would look like success. Intact older points restore as usual.
fn not_past_damage<'a>(
    chain: Result<Vec<&'a Backup>>,
    all: &[Backup],
    damaged: &[catalog::Damaged],
    layout: &Layout,
    at: Option<i64>,
) -> Result<Vec<&'a Backup>> {
    let head = chain.as_ref().ok().and_then(|c| c.last()).map(|b| b.id.timestamp);
    let newer = damaged.iter().rev().find(|d| {
        at.is_none_or(|at| d.id.timestamp <= at) && head.is_none_or(|h| d.id.timestamp > h)
    });
    let Some(d) = newer else { return chain };
    let before = catalog::restore_chain(all, layout, Some(d.id.timestamp - 1)).ok();
    let fallback = match before.as_ref().and_then(|c| c.last()) {
        Some(b) => format!(
            "; the newest intact point before it is {} (--restore-from-date {})",
            b.id.name(),
            catalog::format_local(b.id.timestamp).replace(' ', "T")
        ),
        None => String::new(),
    };
    Err(Error::corrupt(format!(
        "restoring this point needs {}/{} (level {}), which is damaged: {}{fallback}; run \
         `freezer verify`",
        layout.host_backup(),
        d.id.name(),
        d.id.level,
        d.problem
    )))
}

fn describe(layout: &Layout, b: &Backup) -> String {
    format!("backup {}/{} (level {})", layout.host_backup(), b.id.name(), b.id.level)
}

fn damaged(layout: &Layout, b: &Backup, e: io::Error) -> Error {
    Error::from(e).context(format!("{} is damaged", describe(layout, b)))
}

fn check_readable(layout: &Layout, b: &Backup, have_key: bool) -> Result<()> {
    if b.meta.engine_name != "tar" {
        return Err(Error::usage(format!(
            "{} was made by the '{}' engine; only 'tar' backups can be restored",
            describe(layout, b),
            b.meta.engine_name
        )));
    }
    if b.meta.encryption && !have_key {
        let option = match encryption_format(b)? {
            Format::Age => {
                "--encrypt-pass-file FILE (or --encrypt-identity-file FILE if it was encrypted to age recipients)"
            }
            Format::OpensslAes256Cfb => "--encrypt-pass-file FILE",
        };
        return Err(Error::usage(format!(
            "{} is encrypted: add {option} to restore it",
            describe(layout, b)
        )));
    }
    Compression::parse(&b.meta.compression).map_err(|_| {
        Error::corrupt(format!(
            "{} records an unknown compression '{}'",
            describe(layout, b),
            b.meta.compression
        ))
    })?;
    Ok(())
}

/// How `b` is encrypted: our metadata says; freezer-agent's only knows openssl.
fn encryption_format(b: &Backup) -> Result<Format> {
    match &b.meta.encryption_format {
        Some(f) => Format::parse(f),
        None => Ok(Format::OpensslAes256Cfb),
    }
}

/// Whether decrypted bytes start like a stream of `codec` (a tar header for `none`).
fn plausible(codec: Compression) -> impl Fn(&[u8]) -> bool {
    move |b: &[u8]| match codec {
        Compression::None => b.len() >= 512 && tar_checksum_ok(&b[..512]),
        c => Compression::detect(b) == Some(c),
    }
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let field = &h[148..156];
    let text: String =
        field.iter().take_while(|&&c| c != 0 && c != b' ').map(|&c| c as char).collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else { return false };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as u32 })
        .sum();
    sum == want
}

/// The decompressed stream is handed to the extraction in chunks of this size, this many
/// ahead (a few MiB in flight).
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// Run `f` on the decompressed tar stream of one level. Segments recorded at backup time are
/// read ahead on threads of a scope and each checked before use; a backup that recorded none
/// (freezer-agent's) is streamed as one object and checked against a recorded hash at its end,
/// if any.
fn with_level<T>(
    storage: &dyn Storage,
    layout: &Layout,
    b: &Backup,
    opts: &RestoreOptions,
    f: impl FnOnce(Box<dyn Read + Send + '_>) -> Result<T>,
) -> Result<T> {
    let key = layout.data_key(&b.id);
    let codec = Compression::parse(&b.meta.compression)?;
    std::thread::scope(|scope| {
        let raw: Box<dyn Read + Send> = match &b.meta.segments {
            Some(segments) => {
                let recorded: u64 = segments.iter().map(|s| s.size).sum();
                if b.meta.data_size.is_some_and(|size| size != recorded) {
                    return Err(Error::corrupt(format!(
                        "the metadata of {} is inconsistent: its segments add up to {recorded} \
                         bytes, its data_size says {}",
                        describe(layout, b),
                        b.meta.data_size.unwrap_or_default()
                    )));
                }
                let ahead = storage.parallel_reads();
                let fetcher = Fetcher::start(scope, storage, &key, segments, ahead);
                Box::new(Counting(VerifiedReader::new(fetcher, describe(layout, b))))
            }
            None => {
                let expected = match (b.meta.data_size, &b.meta.data_sha256) {
                    (Some(size), Some(sha)) => Some((size, sha.clone())),
                    _ => None,
                };
                let raw = Counting(storage.open(&key)?);
                Box::new(VerifyingReader::new(raw, expected, describe(layout, b)))
            }
        };
        let plain: Box<dyn Read + Send> = match (&opts.key, b.meta.encryption) {
            (Some(key), true) => crypt::decryptor(
                encryption_format(b)?,
                key,
                raw,
                opts.openssl_md,
                &plausible(codec),
            )
            .map_err(|e| e.context(describe(layout, b)))?,
            _ => raw,
        };
        let decoded = codec.decoder(plain, opts.threads).map_err(|e| damaged(layout, b, e))?;
        // Reading, checking, decrypting and decompressing overlap with writing the files.
        f(Box::new(ReadAhead::start(scope, decoded, READ_AHEAD_CHUNK, READ_AHEAD_DEPTH)))
    })
}

/// Every entry the last level calls unchanged (`N`) must be in the target, unless the backup
/// excluded it (excluded names are `N` too, as in GNU tar). Only freezer's own backups record
/// their excludes; for others nothing can be told apart.
fn check_kept(target: &mut Target, head: &Backup, kept: &[Vec<u8>]) -> Result<()> {
    let Some(recorded) = &head.meta.excludes else { return Ok(()) };
    let excludes = crate::exclude::Excludes::from_recorded(recorded)?;
    for name in kept {
        if !excludes.is_excluded(name) && !target.exists(name)? {
            target.missing(format!(
                "{}: the backup lists it as unchanged since the level before, but no level \
                 restored it",
                String::from_utf8_lossy(name)
            ));
        }
    }
    Ok(())
}

/// Read one level's archive to its end without writing: (members, bytes of file data).
fn walk(mut level: Box<dyn Read + Send + '_>) -> io::Result<(u64, u64)> {
    let (mut members, mut bytes) = (0, 0);
    let mut archive = tar::Archive::new(&mut level);
    archive.set_ignore_zeros(true);
    for entry in archive.entries()? {
        let entry = entry?;
        members += 1;
        bytes += entry.size();
    }
    io::copy(&mut level, &mut io::sink())?;
    Ok((members, bytes))
}

/// Apply one level's archive; returns (members, bytes of file data).
/// With `kept`, the names of the entries its dumpdirs call unchanged are collected there.
fn replay(
    level: Box<dyn Read + Send + '_>,
    target: &mut Target,
    mut kept: Option<&mut Vec<Vec<u8>>>,
) -> Result<(u64, u64)> {
    let mut archive = tar::Archive::new(level);
    // GNU incremental restores read past zero blocks, as freezer-agent's `--ignore-zeros`.
    archive.set_ignore_zeros(true);
    let (mut members, mut bytes) = (0u64, 0u64);
    for entry in archive.entries()? {
        crate::interrupt::check()?;
        let mut entry = entry?;
        members += 1;
        progress::add_files(1);
        let name = entry.path_bytes().into_owned();
        let h = entry.header();
        let meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: h.uid()?,
            gid: h.gid()?,
            uname: h.username_bytes().map(|u| u.to_vec()).filter(|u| !u.is_empty()),
            gname: h.groupname_bytes().map(|g| g.to_vec()).filter(|g| !g.is_empty()),
            mtime: h.mtime()? as i64,
            mtime_nsec: 0,
        };
        match h.entry_type().as_byte() {
            b'D' => {
                let mut raw = Vec::new();
                entry.read_to_end(&mut raw)?;
                let dumpdir = Dumpdir::parse(&raw)?;
                if let Some(kept) = kept.as_deref_mut() {
                    let dir = name.strip_suffix(b"/").unwrap_or(&name);
                    for (flag, entry) in dumpdir.entries.iter() {
                        if flag == crate::incremental::dumpdir::Flag::Kept {
                            kept.push([dir, b"/", entry].concat());
                        }
                    }
                }
                target.apply_dumpdir(&name, &dumpdir)?;
                target.create_dir(&name, &meta)?;
            }
            b'5' => target.create_dir(&name, &meta)?,
            b'0' | b'\0' | b'7' => bytes += target.write_file(&name, &meta, &mut entry, false)?,
            b'S' => bytes += target.write_file(&name, &meta, &mut entry, true)?,
            b'2' => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                target.symlink(&name, &link, &meta)?;
            }
            b'1' => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                target.hard_link(&name, &link)?;
            }
            b'6' => target.special(&name, Special::Fifo, &meta)?,
            t @ (b'3' | b'4') => {
                let major = entry.header().device_major()?.unwrap_or(0);
                let minor = entry.header().device_minor()?.unwrap_or(0);
                let kind = if t == b'3' {
                    Special::Char { major, minor }
                } else {
                    Special::Block { major, minor }
                };
                target.special(&name, kind, &meta)?;
            }
            // Volume labels, multi-volume continuations: nothing to restore.
            b'V' | b'M' => {}
            other => log::warn!(
                "{}: skipping archive member of unknown type '{}'",
                String::from_utf8_lossy(&name),
                other as char
            ),
        }
    }
    // Read to the end so the stream's hash is checked even past the end-of-archive blocks.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    target.finish_level()?;
    Ok((members, bytes))
}
