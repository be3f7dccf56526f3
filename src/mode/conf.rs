//! `--mysql-conf FILE`: where the MySQL server is and who to log in as.
//!
//! Both forms in use are read: freezer-agent's, which requires a `[default]` section (it
//! reads it with `configparser`), and freezerc 1.0's documented one, plain `key = value` lines
//! without a section. A `[client]` section (a my.cnf's) is read too; other sections (such as
//! `[mysqld]`, whose `port` is the server's) are ignored. Values may be quoted (`'…'` or
//! `"…"`), as passwords with spaces or `#` must be.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The connection settings read from a `--mysql-conf` file.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct MysqlConf {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub socket: Option<String>,
}

/// Never shows the password.
impl fmt::Debug for MysqlConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConf")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("socket", &self.socket)
            .finish()
    }
}

impl MysqlConf {
    /// Where the server is, for messages: `user@host:port` or `user@socket`.
    pub fn describe(&self) -> String {
        let user = self.user.as_deref().unwrap_or("(no user)");
        match (&self.host, &self.socket) {
            (None, Some(s)) => format!("{user}@{s}"),
            (h, _) => format!(
                "{user}@{}:{}",
                h.as_deref().unwrap_or("localhost"),
                self.port.unwrap_or(3306)
            ),
        }
    }
}

/// Read `path`; a file that others may read gets a warning (it holds a password).
pub(crate) fn read(path: &Path) -> Result<MysqlConf> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(format!("cannot read --mysql-conf {shown} (the MySQL connection settings)"), e)
    })?;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o004 != 0
    {
        log::warn!(
            "--mysql-conf {shown} can be read by every user and holds the MySQL password: \
             chmod 600 {shown}"
        );
    }
    parse(&text, &shown.to_string())
}

/// Parse the text of a conf file named `shown` in errors.
pub(crate) fn parse(text: &str, shown: &str) -> Result<MysqlConf> {
    let mut conf = MysqlConf::default();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_ascii_lowercase());
            continue;
        }
        if !matches!(section.as_deref(), None | Some("default" | "client")) {
            continue;
        }
        // configparser splits at the first '=' or ':', whichever comes first.
        let Some(at) = line.find(['=', ':']) else { continue };
        let key = line[..at].trim().to_ascii_lowercase().replace('_', "-");
        let value = unquote(line[at + 1..].trim()).to_string();
        match key.as_str() {
            "host" => conf.host = Some(value).filter(|v| !v.is_empty()),
            "user" => conf.user = Some(value),
            "password" | "passwd" => conf.password = Some(value),
            "socket" => conf.socket = Some(value).filter(|v| !v.is_empty()),
            "port" => {
                conf.port = Some(value.parse().map_err(|_| {
                    Error::usage(format!(
                        "--mysql-conf {shown}, line {}: port '{value}' is not a port number \
                         (1-65535)",
                        n + 1
                    ))
                })?)
            }
            _ => log::debug!("--mysql-conf {shown}: '{key}' is not used"),
        }
    }
    if conf.user.is_none() {
        return Err(Error::usage(format!(
            "--mysql-conf {shown} names no user: write `user = NAME` (and host, port, \
             password or socket), with or without a [default] section"
        )));
    }
    Ok(conf)
}

/// `'x'` or `"x"` → `x`; anything else unchanged.
fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_form_with_default_section() {
        let c = parse(
            "[default]\nhost = 10.0.0.5\nport = 3307\nuser = backup\npassword = 's3 cr#t'\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("10.0.0.5"));
        assert_eq!(c.port, Some(3307));
        assert_eq!(c.user.as_deref(), Some("backup"));
        assert_eq!(c.password.as_deref(), Some("s3 cr#t"));
        assert_eq!(c.describe(), "backup@10.0.0.5:3307");
    }

    #[test]
    fn freezerc_form_without_section_and_double_quotes() {
        let c = parse("# freezerc 1.0\nhost=localhost\nuser = hostadmin\npassword=\"pw\"\n", "f")
            .unwrap();
        // freezerc 1.0 parsed by substring: `user = hostadmin` set the host. Not here.
        assert_eq!(c.host.as_deref(), Some("localhost"));
        assert_eq!(c.user.as_deref(), Some("hostadmin"));
        assert_eq!(c.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_my_cnf_client_section_and_server_sections_ignored() {
        let c = parse(
            "[mysqld]\nport = 9999\nsocket=/srv\n[client]\nuser=root\nsocket=/run/m.sock\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.port, None);
        assert_eq!(c.socket.as_deref(), Some("/run/m.sock"));
        assert_eq!(c.describe(), "root@/run/m.sock");
    }

    #[test]
    fn errors_name_the_file_and_never_the_password() {
        let e = parse("[default]\nuser=a\npassword=hunter2\nport=33o6\n", "/etc/x.cnf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/x.cnf, line 4") && e.contains("33o6"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse("[mysqld]\nuser=a\n", "/etc/x.cnf").unwrap_err().to_string();
        assert!(e.contains("names no user"), "{e}");
        let c = parse("user=a\npassword=hunter2\n", "f").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
