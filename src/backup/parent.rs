//! The parent level's snapshot file, and the local plaintext copies of snapshots encrypted
//! to recipients (the host cannot decrypt those itself, but must extend their chain).

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::BackupOptions;
use crate::catalog::{Backup, BackupId, Layout};
use crate::crypt::{self, Format};
use crate::error::Result;
use crate::incremental::snapshot::Snapshot;
use crate::storage::{StorageWrite, get_required};

/// The parent's snapshot, decrypted if needed. `None` (with a warning) when it cannot be read
/// here: the backup then starts a new chain rather than failing.
pub(super) fn parent_snapshot(
    storage: &dyn StorageWrite,
    layout: &Layout,
    p: &Backup,
    opts: &BackupOptions,
) -> Result<Option<Snapshot>> {
    let key = layout.engine_metadata_key(&p.id);
    let raw = get_required(storage, &key)
        .map_err(|e| e.context("the parent backup cannot be extended"))?;
    let age = p.meta.encryption && p.meta.encryption_format.as_deref() == Some(Format::Age.name());
    let plain = if !age {
        raw
    } else if let Some(k) = &opts.decrypt_key {
        let looks_right = |b: &[u8]| b.starts_with(b"GNU tar-") || b.is_empty();
        crypt::decrypt_bytes(Format::Age, k, &raw, None, &looks_right).map_err(|e| {
            e.context(format!("cannot read the snapshot of the parent backup {key}"))
        })?
    } else if let Some(copy) =
        state_path(opts, storage, layout, &p.id).and_then(|f| std::fs::read(f).ok())
    {
        copy
    } else {
        log::warn!(
            "the parent backup's snapshot {key} is encrypted and no local copy of it exists{}; \
             starting a new chain (level 0)",
            opts.state_dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default()
        );
        return Ok(None);
    };
    let snap = Snapshot::parse(&plain).map_err(|e| e.context(format!("parent backup {key}")))?;
    Ok(Some(snap))
}

/// `<state_dir>/<container id>/<HB>/<T0>/<L>_<T>.snar`.
fn state_path(
    opts: &BackupOptions,
    storage: &dyn StorageWrite,
    layout: &Layout,
    id: &BackupId,
) -> Option<PathBuf> {
    use sha2::Digest;
    let dir = opts.state_dir.as_ref()?;
    let container = hex::encode(&sha2::Sha256::digest(storage.describe().as_bytes())[..8]);
    Some(
        dir.join(container)
            .join(layout.host_backup())
            .join(id.level_zero.to_string())
            .join(format!("{}.snar", id.name())),
    )
}

/// Keep a plaintext copy of a snapshot encrypted to recipients (owner-only); on failure, what
/// could not be written and why.
pub(super) fn save_state(
    opts: &BackupOptions,
    storage: &dyn StorageWrite,
    layout: &Layout,
    id: &BackupId,
    snapshot: &[u8],
) -> std::result::Result<(), (String, io::Error)> {
    let Some(path) = state_path(opts, storage, layout, id) else {
        let e =
            io::Error::new(io::ErrorKind::NotFound, "no HOME, XDG_STATE_HOME or STATE_DIRECTORY");
        return Err(("cannot keep a local copy of the snapshot".into(), e));
    };
    path.parent()
        .map_or(Ok(()), |d| std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d))
        .and_then(|()| {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(snapshot)
        })
        .map_err(|e| (format!("cannot keep a local copy of the snapshot in {}", path.display()), e))
}
