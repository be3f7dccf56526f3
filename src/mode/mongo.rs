//! `--mode mongo`: refuse unless the node is the primary or a standalone (a secondary with
//! `--mongo-allow-secondary`), record the topology seen, and with `--mongo-fsync-lock` hold
//! `fsyncLock` while the snapshot is created where the server supports it; otherwise rely on
//! the journal (WiredTiger's, always on), as freezer-agent does, and say so.
//!
//! The driver is `mongodb` (sync API, rustls + ring; no DNS resolver, so no `mongodb+srv://`).
//! It talks to the one node named (a direct connection): the node whose data directory is
//! backed up, not whichever member the driver would select.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use mongodb::sync::Client;
use serde::Deserialize;

use super::{MongoOptions, Quiesced};
use crate::catalog::DatabaseMeta;
use crate::error::{Error, ErrorKind, Result};

/// A MongoDB node checked (and, with `--mongo-fsync-lock`, locked) until released.
pub(crate) struct Mongo {
    client: Option<Client>,
    locked: bool,
    recorded: DatabaseMeta,
}

/// The fields of a `hello` (or `isMaster`) reply the decision reads.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hello {
    is_writable_primary: Option<bool>,
    /// Servers before 4.4.2 (`isMaster`) and some stand-ins.
    ismaster: Option<bool>,
    secondary: Option<bool>,
    set_name: Option<String>,
    primary: Option<String>,
    me: Option<String>,
    arbiter_only: Option<bool>,
    /// `isdbgrid` on a mongos router.
    msg: Option<String>,
}

impl Mongo {
    /// Connect, check the node's role, lock it if asked.
    pub fn prepare(o: &MongoOptions, snapshot: bool) -> Result<Mongo> {
        let (client, node) = connect(&o.uri)?;
        let admin = client.database("admin");
        let hello = hello(&admin, &node)?;
        let topology = decide(&hello, &node, o.allow_secondary)?;
        let mut recorded = DatabaseMeta {
            mode: "mongo".into(),
            server_version: version(&client),
            topology: Some(topology.into()),
            replica_set: hello.set_name.clone(),
            node: Some(hello.me.clone().unwrap_or_else(|| node.clone())),
            ..Default::default()
        };
        if !snapshot {
            log::warn!(
                "--mode mongo without --snapshot: the files of MongoDB {node} are read while it \
                 writes them, so the copy is not consistent (files that change while read are \
                 reported, exit 3){}. Add --snapshot (LVM) or --snapshot-type btrfs",
                if o.fsync_lock {
                    "; with --mongo-fsync-lock, writes wait the whole backup"
                } else {
                    ""
                }
            );
        }
        let locked = o.fsync_lock && fsync_lock(&admin, &node);
        recorded.consistency = Some(consistency(locked, snapshot).into());
        log::info!("MongoDB {node}: {topology}; {}", consistency(locked, snapshot));
        Ok(Mongo { client: Some(client), locked, recorded })
    }
}

impl Quiesced for Mongo {
    fn recorded(&self) -> &DatabaseMeta {
        &self.recorded
    }

    fn release(&mut self) -> Result<()> {
        let Some(client) = self.client.take() else { return Ok(()) };
        if !std::mem::take(&mut self.locked) {
            return Ok(());
        }
        let node = self.recorded.node.clone().unwrap_or_default();
        match client.database("admin").run_command(doc! {"fsyncUnlock": 1}).run() {
            Ok(_) => {
                log::info!("MongoDB {node} unlocked (fsyncUnlock)");
                Ok(())
            }
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "MongoDB {node}: fsyncUnlock failed ({}); its writes stay blocked until \
                     you run db.fsyncUnlock() in mongosh",
                    brief(&e)
                ),
            )),
        }
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            log::error!("{e}");
        }
    }
}

/// The node's `hello` reply (`isMaster` on servers before 4.4.2).
fn hello(admin: &mongodb::sync::Database, node: &str) -> Result<Hello> {
    let reply = match admin.run_command(doc! {"hello": 1}).run() {
        Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(_)) => {
            admin.run_command(doc! {"isMaster": 1}).run()
        }
        r => r,
    };
    let reply = reply.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "MongoDB {node}: cannot connect ({}); check the server runs there, and \
                 --mongo-uri (or --mongo-host, --mongo-port)",
                brief(&e)
            ),
        )
    })?;
    mongodb::bson::from_document(reply).map_err(|e| {
        Error::new(ErrorKind::Io, format!("MongoDB {node}: unexpected hello reply: {e}"))
    })
}

/// A client for the one node of `uri`, and that node (`host:port`) for messages.
fn connect(uri: &str) -> Result<(Client, String)> {
    let shown = redact(uri);
    let bad = |what: String| Error::usage(format!("--mongo-uri {shown}: {what}"));
    let mut opts = ClientOptions::parse(uri)
        .run()
        .map_err(|e| bad(format!("not a MongoDB URI ({})", brief(&e))))?;
    let [host] = opts.hosts.as_slice() else {
        return Err(bad(format!(
            "names {} hosts: name the one node whose data directory is backed up",
            opts.hosts.len()
        )));
    };
    let node = host.to_string();
    opts.direct_connection.get_or_insert(true);
    // Fail fast on a closed port or a wrong host (the driver waits 30 s by default).
    opts.server_selection_timeout.get_or_insert(Duration::from_secs(5));
    opts.connect_timeout.get_or_insert(Duration::from_secs(5));
    opts.app_name.get_or_insert_with(|| "freezer".into());
    let client = Client::with_options(opts).map_err(|e| bad(brief(&e)))?;
    Ok((client, node))
}

/// The node's role as the metadata records it, or why it may not be backed up.
pub(crate) fn decide(h: &Hello, node: &str, allow_secondary: bool) -> Result<&'static str> {
    if h.msg.as_deref() == Some("isdbgrid") {
        return Err(Error::usage(format!(
            "MongoDB {node} is a mongos router, which has no data directory: back up each \
             shard's primary (or a secondary, with --mongo-allow-secondary) on its own host"
        )));
    }
    let writable = h.is_writable_primary.or(h.ismaster).unwrap_or(false);
    match (&h.set_name, writable, h.secondary.unwrap_or(false)) {
        (None, true, _) => Ok("standalone"),
        (Some(_), true, _) => Ok("primary"),
        (Some(_), false, true) if allow_secondary => Ok("secondary"),
        (Some(set), false, true) => Err(Error::usage(format!(
            "MongoDB {node} is a secondary of replica set {set}{}: back up the primary, or give \
             --mongo-allow-secondary to back up this secondary",
            match &h.primary {
                Some(p) => format!(", whose primary is {p}"),
                None => " (which has no primary now)".into(),
            }
        ))),
        (set, ..) => Err(Error::usage(format!(
            "MongoDB {node} is neither a primary nor a secondary{}{}; back up the primary{}",
            set.as_ref().map(|s| format!(" of replica set {s}")).unwrap_or_default(),
            if h.arbiter_only == Some(true) {
                " (an arbiter, which holds no data)"
            } else {
                " (still starting, or recovering)"
            },
            h.primary.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
        ))),
    }
}

/// `fsyncLock`; false (with a note in the log) where the server refuses it.
fn fsync_lock(admin: &mongodb::sync::Database, node: &str) -> bool {
    match admin.run_command(doc! {"fsync": 1, "lock": true}).run() {
        Ok(_) => {
            log::info!("MongoDB {node} locked (fsyncLock)");
            true
        }
        Err(e) => {
            log::warn!(
                "MongoDB {node} does not take fsyncLock ({}): relying on its journal, as \
                 without --mongo-fsync-lock",
                brief(&e)
            );
            false
        }
    }
}

/// The driver's error in a few words (its `Display` adds labels and raw server replies).
fn brief(e: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind as K;
    match &*e.kind {
        K::Command(c) => format!("{} ({}, code {})", c.message, c.code_name, c.code),
        // "No available servers. Topology: { … Error: Kind: I/O error: Connection refused …,
        // labels: … }": the server's error is what says what is wrong.
        K::ServerSelection { message, .. } => match message.split_once("Error: Kind: ") {
            Some((_, rest)) => rest.split(", labels:").next().unwrap_or(rest).to_string(),
            None => message.clone(),
        },
        K::InvalidArgument { message, .. } => message.clone(),
        K::Authentication { message, .. } => format!("authentication failed: {message}"),
        _ => e.to_string(),
    }
}

fn consistency(locked: bool, snapshot: bool) -> &'static str {
    match (locked, snapshot) {
        (true, true) => "fsyncLock while the snapshot was created",
        (true, false) => "fsyncLock for the whole backup, without a snapshot",
        (false, true) => "the journal: a crash-consistent snapshot, without fsyncLock",
        (false, false) => "none: no snapshot, files read while the server wrote them",
    }
}

fn version(client: &Client) -> Option<String> {
    let info: Document = client.database("admin").run_command(doc! {"buildInfo": 1}).run().ok()?;
    info.get_str("version").ok().map(String::from)
}

/// `uri` with its password replaced by `***`, for messages.
pub(crate) fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded: `db.adminCommand({hello: 1})` of SecantusDB 0.7.0b3 (scripts/service-secantus),
    /// as the primary of its one-node replica set, and with --standalone (2026-12-03).
    const SECANTUS_PRIMARY: &str = r#"{"isWritablePrimary": true, "ismaster": true, "topologyVersion": {"processId": {"$oid": "6b1103e69b4f09d743caf50b"}, "counter": 0}, "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000, "localTime": {"$date": "2026-12-03T05:53:47.179Z"}, "logicalSessionTimeoutMinutes": 30, "connectionId": 8, "minWireVersion": 0, "maxWireVersion": 27, "readOnly": false, "ok": 1.0, "setName": "secantus", "setVersion": 1, "hosts": ["127.0.0.1:27217"], "passives": [], "arbiters": [], "secondary": false, "primary": "127.0.0.1:27217", "me": "127.0.0.1:27217", "electionId": {"$oid": "7fffffff0000000000000001"}}"#;
    const SECANTUS_STANDALONE: &str = r#"{"isWritablePrimary": true, "ismaster": true, "topologyVersion": {"processId": {"$oid": "6b1103e958897a07e3990155"}, "counter": 0}, "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000, "localTime": {"$date": "2026-12-03T05:53:47.196Z"}, "logicalSessionTimeoutMinutes": 30, "connectionId": 7, "minWireVersion": 0, "maxWireVersion": 27, "readOnly": false, "ok": 1.0}"#;
    /// Not recorded here (no real replica set can run on this machine): the secondary's reply
    /// of the MongoDB manual's `hello` page (members of a replica set), with its fields as a
    /// mongod 7 sends them; and an arbiter's and a mongos's, reduced the same way.
    const MANUAL_SECONDARY: &str = r#"{"topologyVersion": {"processId": {"$oid": "5f1ba38a3f7b2c8b4d6a7e21"}, "counter": 6}, "hosts": ["db0.example.net:27017", "db1.example.net:27017", "db2.example.net:27017"], "setName": "rs0", "setVersion": 1, "isWritablePrimary": false, "secondary": true, "primary": "db0.example.net:27017", "me": "db1.example.net:27017", "lastWrite": {}, "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000, "localTime": {"$date": "2024-01-10T16:20:00.000Z"}, "logicalSessionTimeoutMinutes": 30, "connectionId": 42, "minWireVersion": 0, "maxWireVersion": 21, "readOnly": false, "ok": 1}"#;
    const MANUAL_ARBITER: &str = r#"{"setName": "rs0", "isWritablePrimary": false, "secondary": false, "arbiterOnly": true, "primary": "db0.example.net:27017", "me": "db2.example.net:27017", "ok": 1}"#;
    const MANUAL_MONGOS: &str =
        r#"{"isWritablePrimary": true, "msg": "isdbgrid", "maxWireVersion": 21, "ok": 1}"#;

    fn hello(json: &str) -> Hello {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn primary_and_standalone_are_backed_up() {
        assert_eq!(decide(&hello(SECANTUS_PRIMARY), "n", false).unwrap(), "primary");
        assert_eq!(decide(&hello(SECANTUS_STANDALONE), "n", false).unwrap(), "standalone");
        // An old server's isMaster: only `ismaster`.
        assert_eq!(
            decide(&hello(r#"{"ismaster": true, "ok": 1}"#), "n", false).unwrap(),
            "standalone"
        );
    }

    #[test]
    fn a_secondary_is_refused_naming_the_primary_unless_allowed() {
        let h = hello(MANUAL_SECONDARY);
        let e = decide(&h, "db1.example.net:27017", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        let e = e.to_string();
        assert!(e.contains("db1.example.net:27017 is a secondary of replica set rs0"), "{e}");
        assert!(e.contains("whose primary is db0.example.net:27017"), "{e}");
        assert!(e.contains("--mongo-allow-secondary"), "{e}");
        assert_eq!(decide(&h, "db1", true).unwrap(), "secondary");
    }

    #[test]
    fn arbiters_and_routers_are_refused() {
        let e = decide(&hello(MANUAL_ARBITER), "db2", true).unwrap_err().to_string();
        assert!(e.contains("an arbiter") && e.contains("db0.example.net:27017"), "{e}");
        let e = decide(&hello(MANUAL_MONGOS), "r", true).unwrap_err().to_string();
        assert!(e.contains("mongos router"), "{e}");
    }

    #[test]
    fn the_password_is_never_shown() {
        assert_eq!(redact("mongodb://u:p%40ss@h:1/db?tls=true"), "mongodb://u:***@h:1/db?tls=true");
        assert_eq!(redact("mongodb://h:1/"), "mongodb://h:1/");
        assert_eq!(redact("garbage"), "garbage");
    }
}
