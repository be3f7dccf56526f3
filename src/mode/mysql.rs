//! `--mode mysql`: `FLUSH TABLES WITH READ LOCK` on one connection, the binary-log position
//! and GTID recorded under it, `UNLOCK TABLES` as soon as the snapshot exists.
//!
//! The lock's wait is bounded twice: `lock_wait_timeout` (the server gives up on metadata
//! locks) and a watchdog that kills the statement from a second connection (a wait that the
//! server does not bound). On either, the error names the query that blocks the lock.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{ClientIdentity, Conn, Opts, OptsBuilder, Row, SslOpts};

use super::conf::{self, MysqlConf};
use super::{MysqlOptions, Quiesced};
use crate::catalog::DatabaseMeta;
use crate::error::{Error, ErrorKind, Result};

/// A MySQL server under `FLUSH TABLES WITH READ LOCK` until released.
pub(crate) struct Mysql {
    conn: Option<Conn>,
    recorded: DatabaseMeta,
    target: String,
}

impl Mysql {
    /// Connect, lock, record the position.
    pub fn prepare(o: &MysqlOptions, snapshot: bool) -> Result<Mysql> {
        let conf = conf::read(&o.conf)?;
        let target = conf.describe();
        let opts = connect_opts(&conf, o.lock_timeout);
        let mut conn = Conn::new(opts.clone()).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "MySQL: cannot connect to {target} ({e}); check the server runs and the \
                     host, port, user, password, socket or ssl-* keys in --mysql-conf {}",
                    o.conf.display()
                ),
            )
        })?;
        if !snapshot {
            log::warn!(
                "--mode mysql without --snapshot: the tables of {target} stay locked (FLUSH \
                 TABLES WITH READ LOCK) for the whole backup, so every write waits until it \
                 ends; and InnoDB keeps writing its files in the background even under the \
                 lock, so only a snapshot gives a consistent InnoDB copy (files that change \
                 while read are reported, exit 3). Add --snapshot (LVM) or --snapshot-type btrfs"
            );
        }
        lock(&mut conn, &opts, &target, o.lock_timeout)?;
        let mut recorded = position(&mut conn, &target)?;
        recorded.consistency = Some(
            match snapshot {
                true => "FLUSH TABLES WITH READ LOCK while the snapshot was created",
                false => {
                    "FLUSH TABLES WITH READ LOCK for the whole backup, without a snapshot \
                     (InnoDB files may have changed while read)"
                }
            }
            .into(),
        );
        log::info!(
            "MySQL {target} locked (FLUSH TABLES WITH READ LOCK); binlog position {}",
            recorded.summary()
        );
        Ok(Mysql { conn: Some(conn), recorded, target })
    }
}

impl Quiesced for Mysql {
    fn recorded(&self) -> &DatabaseMeta {
        &self.recorded
    }

    fn release(&mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else { return Ok(()) };
        let target = &self.target;
        let unlocked = conn.query_drop("UNLOCK TABLES");
        // Closing the connection releases the lock too: an UNLOCK that failed is still done.
        drop(conn);
        match unlocked {
            Ok(()) => {
                log::info!("MySQL {target} unlocked (UNLOCK TABLES)");
                Ok(())
            }
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "MySQL {target}: UNLOCK TABLES failed ({e}): the connection was lost, and \
                     with it the lock, perhaps before the snapshot (or, without one, before the \
                     backup) ended; check the server's log, and back up again if so"
                ),
            )),
        }
    }
}

/// The connection options; the password stays inside them (`Opts`' Debug shows it: never
/// log them).
fn connect_opts(c: &MysqlConf, lock_timeout: Duration) -> Opts {
    let b = OptsBuilder::new()
        .user(c.user.clone())
        .pass(c.password.clone())
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        // A server that stops answering must not hang the backup (the lock wait is shorter).
        .read_timeout(Some(lock_timeout + Duration::from_secs(60)))
        .write_timeout(Some(Duration::from_secs(60)));
    let b = b.ssl_opts(c.tls.as_ref().map(|t| {
        SslOpts::default()
            .with_root_cert_path(t.ca.clone())
            .with_client_identity(t.identity.clone().map(|(c, k)| ClientIdentity::new(c, k)))
            .with_danger_accept_invalid_certs(!t.verify_ca)
            .with_danger_skip_domain_validation(!t.verify_identity)
    }));
    let b = match (&c.host, &c.socket) {
        (None, Some(s)) => b.socket(Some(s.clone())).prefer_socket(true),
        (h, s) => b
            .ip_or_hostname(Some(h.clone().unwrap_or_else(|| "localhost".into())))
            .tcp_port(c.port.unwrap_or(3306))
            .socket(s.clone()),
    };
    Opts::from(b)
}

/// `FLUSH TABLES WITH READ LOCK`, waiting at most `timeout`.
fn lock(conn: &mut Conn, opts: &Opts, target: &str, timeout: Duration) -> Result<()> {
    let secs = timeout.as_secs().max(1);
    let failed = |what: String| Error::new(ErrorKind::Io, format!("MySQL {target}: {what}"));
    // wait_timeout: without a snapshot the connection idles for the whole backup, and the
    // server closing it would drop the lock silently (its default is 8 hours).
    conn.query_drop(format!(
        "SET SESSION lock_wait_timeout = {secs}, SESSION wait_timeout = 31536000"
    ))
    .map_err(|e| failed(format!("cannot set lock_wait_timeout: {e}")))?;
    let id = conn.connection_id();
    let dog = Watchdog::arm(opts.clone(), id, Duration::from_secs(secs) + Duration::from_secs(2));
    let locked = conn.query_drop("FLUSH TABLES WITH READ LOCK");
    let killed = dog.disarm();
    let Err(e) = locked else { return Ok(()) };
    // 1205: ER_LOCK_WAIT_TIMEOUT, the server's own bound (lock_wait_timeout).
    let timed_out = killed || matches!(&e, mysql::Error::MySqlError(m) if m.code == 1205);
    let waited = match timed_out {
        true => format!("did not get the lock within --mysql-lock-timeout {secs}s"),
        false => format!("failed ({e})"),
    };
    let blocker = blocker(opts, id).unwrap_or_else(|| "no running query was seen".into());
    Err(failed(format!(
        "FLUSH TABLES WITH READ LOCK {waited}; it waited for {blocker}. Let that finish or end \
         it (KILL <id>), or raise --mysql-lock-timeout; nothing was backed up"
    )))
}

/// Kills a statement of connection `id` that runs longer than allowed, from a second
/// connection.
struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<bool>,
}

impl Watchdog {
    fn arm(opts: Opts, id: u32, after: Duration) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if stopped.recv_timeout(after) != Err(mpsc::RecvTimeoutError::Timeout) {
                return false;
            }
            match Conn::new(opts).and_then(|mut c| c.query_drop(format!("KILL QUERY {id}"))) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("MySQL: could not stop the waiting FLUSH TABLES: {e}");
                    true
                }
            }
        });
        Watchdog { stop, thread }
    }

    /// Whether it fired.
    fn disarm(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(false)
    }
}

/// The longest-running statement of another connection, described (what blocks the lock).
fn blocker(opts: &Opts, own: u32) -> Option<String> {
    let mut conn = Conn::new(opts.clone()).ok()?;
    let q = format!(
        "SELECT ID, USER, TIME, COALESCE(STATE, ''), LEFT(INFO, 200) \
         FROM information_schema.PROCESSLIST \
         WHERE ID NOT IN ({own}, CONNECTION_ID()) AND INFO IS NOT NULL \
           AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') \
           AND COALESCE(STATE, '') NOT LIKE '%global read lock%' \
         ORDER BY TIME DESC LIMIT 1"
    );
    let found: Option<(u64, String, u64, String, String)> = conn.query_first(q).ok()?;
    if let Some((id, user, time, state, info)) = found {
        return Some(format!(
            "connection {id} (user {user}, running {time}s, state '{state}'): {info}"
        ));
    }
    // An open transaction that wrote holds the lock without running anything.
    let q = "SELECT trx_mysql_thread_id, trx_started FROM information_schema.INNODB_TRX \
             ORDER BY trx_started LIMIT 1";
    let trx: Option<(u64, String)> = conn.query_first(q).ok()?;
    trx.map(|(id, since)| format!("connection {id}, an open transaction since {since}"))
}

/// The binary-log file, position and GTID position, read under the lock.
fn position(conn: &mut Conn, target: &str) -> Result<DatabaseMeta> {
    let mut meta =
        DatabaseMeta { mode: "mysql".into(), node: Some(target.into()), ..Default::default() };
    meta.server_version = conn.query_first::<String, _>("SELECT @@version").ok().flatten();
    // MySQL 8.4 renamed SHOW MASTER STATUS; MariaDB and older MySQL know only the old name.
    let status = match conn.query_first::<Row, _>("SHOW MASTER STATUS") {
        // 1064: a syntax error, the server knows only the new name.
        Err(mysql::Error::MySqlError(e)) if e.code == 1064 => {
            conn.query_first::<Row, _>("SHOW BINARY LOG STATUS")
        }
        r => r,
    };
    let status = status.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "MySQL {target}: cannot read the binlog position ({e}); the user needs the \
                     BINLOG MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) privilege"
            ),
        )
    })?;
    match status {
        Some(row) => {
            meta.binlog_file = row.get_opt::<String, _>("File").and_then(|v| v.ok());
            meta.binlog_position = row.get_opt::<u64, _>("Position").and_then(|v| v.ok());
        }
        None => log::warn!(
            "MySQL {target} writes no binary log (log_bin is OFF): the backup records no binlog \
             position, so changes after it cannot be replayed; enable log-bin for point-in-time \
             recovery"
        ),
    }
    // MariaDB: @@gtid_binlog_pos; MySQL: @@gtid_executed.
    meta.gtid_position = ["SELECT @@GLOBAL.gtid_binlog_pos", "SELECT @@GLOBAL.gtid_executed"]
        .iter()
        .find_map(|q| conn.query_first::<Option<String>, _>(*q).ok().flatten().flatten())
        .filter(|g| !g.is_empty());
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The shared test server of `scripts/services` (`scripts/service-mariadb`).
    fn opts() -> Opts {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: start scripts/service-mariadb (scripts/services does)")
            })
        };
        let conf =
            conf::parse(&std::fs::read_to_string(var("FREEZER_TEST_MYSQL_CONF")).unwrap(), "t")
                .unwrap();
        connect_opts(&conf, Duration::from_secs(5))
    }

    #[test]
    fn the_watchdog_ends_a_statement_that_outlives_it_and_only_that() {
        let opts = opts();
        let mut conn = Conn::new(opts.clone()).unwrap();
        let dog = Watchdog::arm(opts.clone(), conn.connection_id(), Duration::from_millis(300));
        let t = Instant::now();
        // Killed, SLEEP returns 1 (or the statement fails as interrupted).
        let _ = conn.query_drop("SELECT SLEEP(20)");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(dog.disarm(), "it fired");
        let dog = Watchdog::arm(opts, conn.connection_id(), Duration::from_secs(5));
        conn.query_drop("SELECT 1").unwrap();
        assert!(!dog.disarm(), "disarmed in time, it does not fire");
        conn.query_drop("SELECT 1").unwrap();
    }
}
