//! `freezer verify`: re-read what is stored and check it against what the backup recorded.

use std::sync::Arc;

use anyhow::Result;
use freezer::catalog::{self, BackupMeta, Layout};
use freezer::compress::Compression;
use freezer::crypt::{self, DecryptKey, Format};
use freezer::storage::Storage;
use freezer::verify::{self as lib, Select, VerifyOptions};
use serde_json::json;

use crate::cli::{Common, VerifyCmd};
use crate::exit::Exit;
use crate::run::backup_name;

pub fn run(
    storage: &dyn Storage,
    common: &Common,
    cmd: &VerifyCmd,
    hostname: &str,
) -> Result<Exit> {
    let layouts = if cmd.all_hosts {
        freezer::prune::all_layouts(storage)?
    } else {
        vec![Layout::new(hostname, &backup_name(common, None))]
    };
    let select = match (&cmd.restore_from_date, cmd.newest) {
        (Some(d), _) => Select::At(catalog::parse_date(d)?),
        (None, true) => Select::Newest,
        (None, false) => Select::All,
    };
    let key: Option<Arc<DecryptKey>> = match (&cmd.encrypt_identity_file, &common.encrypt_pass_file)
    {
        (Some(f), _) => Some(Arc::new(crypt::read_identity_file(f)?)),
        (None, Some(f)) => Some(Arc::new(DecryptKey::Passphrase(crypt::read_pass_file(f)?))),
        (None, None) => None,
    };
    let decrypt = key.map(|key| {
        let hook: Box<lib::Decrypt> = Box::new(move |meta: &BackupMeta, raw| {
            let format = match &meta.encryption_format {
                Some(f) => Format::parse(f)?,
                None => Format::OpensslAes256Cfb,
            };
            let codec = Compression::parse(&meta.compression)?;
            let plausible =
                move |b: &[u8]| codec == Compression::None || Compression::detect(b) == Some(codec);
            crypt::decryptor(format, &key, raw, None, &plausible)
        });
        hook
    });
    let report = lib::verify(storage, &layouts, &VerifyOptions { select, decrypt })?;
    if common.json {
        let items: Vec<_> = report
            .checked
            .iter()
            .map(|c| {
                json!({"host_backup": c.host_backup, "backup": c.id.name(), "level": c.id.level,
                       "ok": c.ok, "problems": c.problems, "notes": c.notes, "bytes": c.bytes})
            })
            .collect();
        println!("{}", serde_json::to_string(&items)?);
    } else {
        for c in &report.checked {
            let line = if c.ok {
                format!(
                    "ok       {}/{} (level {}){}",
                    c.host_backup,
                    c.id.name(),
                    c.id.level,
                    notes(&c.notes)
                )
            } else {
                format!("DAMAGED  {}/{} (level {})", c.host_backup, c.id.name(), c.id.level)
            };
            if !common.quiet || !c.ok {
                println!("{line}");
            }
            for p in &c.problems {
                log::error!("{p}");
            }
        }
    }
    let bad = report.damaged().count();
    if bad > 0 {
        log::error!("{bad} of {} backups are damaged", report.checked.len());
        return Ok(Exit::Damaged);
    }
    Ok(Exit::Ok)
}

fn notes(n: &[String]) -> String {
    if n.is_empty() { String::new() } else { format!(": {}", n.join("; ")) }
}
