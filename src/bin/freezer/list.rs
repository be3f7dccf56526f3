//! `freezer list` / `--action info`, and freezerc 1.0's `--list-containers` / `--list-objects`.

use std::io::Write;

use anyhow::Result;
use freezer::catalog::{self, Layout};
use freezer::storage::Storage;
use serde_json::json;

use crate::ui;

/// Backups by host and name, chain by chain: a table, or JSON with `json`.
pub fn backups(
    storage: &dyn Storage,
    hostname: &str,
    only: Option<&str>,
    json: bool,
) -> Result<()> {
    let names: Vec<String> = match only {
        Some(name) => vec![Layout::new(hostname, name).host_backup().to_string()],
        None => storage.list(&format!("metadata/{}", catalog::ENGINE))?,
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut items = Vec::new();
    let mut databases = false;
    for hb in names {
        let layout = Layout::from_host_backup(&hb);
        let found = catalog::load_catalog(storage, &layout)?;
        let all = &found.backups;
        let mut entries: Vec<(i64, serde_json::Value, Vec<String>)> = Vec::new();
        for b in all {
            databases |= b.meta.database.is_some();
            let parent = catalog::parent_of(all, b).map(|p| p.id.name());
            let status = match catalog::restore_chain(all, &layout, Some(b.id.timestamp)) {
                Ok(chain) if chain.last().is_some_and(|h| h.id == b.id) => "ok",
                _ => "unrestorable",
            };
            let item = json!({
                "host_backup": hb,
                "chain": b.id.level_zero,
                "level": b.id.level,
                "name": b.id.name(),
                "timestamp": b.id.timestamp,
                "date": catalog::format_local(b.id.timestamp),
                "parent": parent,
                "compression": b.meta.compression,
                "encryption": b.meta.encryption,
                "size": b.meta.data_size,
                "tool": b.meta.tool,
                "database": b.meta.database,
                "status": status,
            });
            let row = vec![
                hb.clone(),
                b.id.level_zero.to_string(),
                b.id.level.to_string(),
                catalog::format_local(b.id.timestamp),
                b.meta.compression.clone(),
                if b.meta.encryption { "yes".into() } else { "no".into() },
                b.meta.data_size.map(ui::human).unwrap_or_else(|| "-".into()),
                // A level above 0 always has a parent: when it is gone, say so, not "-".
                parent.unwrap_or_else(|| if b.id.level > 0 { "(missing)" } else { "-" }.into()),
                b.meta.database.as_ref().map_or_else(|| "-".into(), |d| d.summary()),
                status.into(),
            ];
            entries.push((b.id.timestamp, item, row));
        }
        for d in &found.damaged {
            log::warn!("{}", d.problem);
            let item = json!({
                "host_backup": hb,
                "chain": d.id.level_zero,
                "level": d.id.level,
                "name": d.id.name(),
                "timestamp": d.id.timestamp,
                "date": catalog::format_local(d.id.timestamp),
                "status": "damaged",
                "problem": d.problem,
            });
            let mut row = vec![hb.clone(), d.id.level_zero.to_string(), d.id.level.to_string()];
            row.push(catalog::format_local(d.id.timestamp));
            row.extend(["?", "?", "?", "?", "?", "damaged"].map(String::from));
            entries.push((d.id.timestamp, item, row));
        }
        entries.sort_by_key(|e| e.0);
        for (_, item, row) in entries {
            items.push(item);
            rows.push(row);
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&items)?)?;
    } else {
        let mut header = vec![
            "BACKUP",
            "CHAIN",
            "LEVEL",
            "DATE",
            "COMPRESSION",
            "ENCRYPTED",
            "SIZE",
            "PARENT",
            "DATABASE",
            "STATUS",
        ];
        // The database column only when a backup has one (`--mode mysql|mongo`).
        if !databases {
            header.remove(DATABASE);
            for r in &mut rows {
                r.remove(DATABASE);
            }
        }
        write!(out, "{}", ui::table(&header, &rows))?;
    }
    Ok(())
}

/// The DATABASE column's index.
const DATABASE: usize = 8;

/// Every object key under `prefix`, depth first.
fn walk(storage: &dyn Storage, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    for name in storage.list(prefix)? {
        let key = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let before = out.len();
        walk(storage, &key, out)?;
        if out.len() == before && storage.exists(&key)? {
            out.push(key);
        }
    }
    Ok(())
}

/// freezerc 1.0 `--list-containers`: one JSON object per container (here: the one given).
pub fn containers(storage: &dyn Storage) -> Result<()> {
    let mut keys = Vec::new();
    walk(storage, "", &mut keys)?;
    let mut size = 0u64;
    for k in &keys {
        size += storage.size(k).ok().flatten().unwrap_or(0);
    }
    println!(
        "{}",
        json!({"container_name": storage.describe(), "size": format!("{} MB", size / 1_000_000), "objects_count": keys.len()})
    );
    Ok(())
}

/// freezerc 1.0 `--list-objects`: one JSON object per object.
pub fn objects(storage: &dyn Storage) -> Result<()> {
    let mut keys = Vec::new();
    walk(storage, "", &mut keys)?;
    for k in keys {
        println!("{}", json!({"object_name": k, "size": storage.size(&k).ok().flatten()}));
    }
    Ok(())
}
