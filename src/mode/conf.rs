//! `--mysql-conf FILE`: where the MySQL server is and who to log in as.
//!
//! Both forms in use are read: freezer-agent's, which requires a `[default]` section (it
//! reads it with `configparser`), and freezerc 1.0's documented one, plain `key = value` lines
//! without a section. A `[client]` section (a my.cnf's) is read too; other sections (such as
//! `[mysqld]`, whose `port` is the server's) are ignored. Values may be quoted (`'…'` or
//! `"…"`), as passwords with spaces or `#` must be.
//!
//! TLS as MySQL's and MariaDB's clients spell it: `ssl-ca` (the CA that signed the server's
//! certificate), `ssl-cert` + `ssl-key` (a client certificate), `ssl = 1` (TLS with the public
//! roots), and `ssl-mode` (`DISABLED`, `REQUIRED`: encrypted, certificate not checked,
//! `VERIFY_CA`: signed by the CA, any name, `VERIFY_IDENTITY`: the default once TLS is on).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The connection settings read from a `--mysql-conf` file.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct MysqlConf {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub socket: Option<String>,
    /// TLS, when asked for.
    pub tls: Option<Tls>,
}

/// How to check the server's certificate, and with what.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tls {
    /// The CA that signed the server's certificate (else the public roots).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The certificate is checked against the CA (`VERIFY_CA` and `VERIFY_IDENTITY`).
    pub verify_ca: bool,
    /// Its name is checked against the host (`VERIFY_IDENTITY`).
    pub verify_identity: bool,
}

/// The TLS settings as read, before they are combined.
#[derive(Default)]
struct TlsKeys {
    on: Option<bool>,
    mode: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
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
            .field("tls", &self.tls)
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
    let mut tls = TlsKeys::default();
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
            "ssl" => {
                tls.on =
                    Some(matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes"))
            }
            "ssl-mode" => tls.mode = Some(value.to_ascii_uppercase()),
            "ssl-ca" => tls.ca = Some(PathBuf::from(value)),
            "ssl-cert" => tls.cert = Some(PathBuf::from(value)),
            "ssl-key" => tls.key = Some(PathBuf::from(value)),
            _ => log::debug!("--mysql-conf {shown}: '{key}' is not used"),
        }
    }
    conf.tls = tls_of(tls, shown)?;
    if conf.user.is_none() {
        return Err(Error::usage(format!(
            "--mysql-conf {shown} names no user: write `user = NAME` (and host, port, \
             password or socket), with or without a [default] section"
        )));
    }
    Ok(conf)
}

/// TLS from its keys: on with any of them, off with `ssl = 0` or `ssl-mode = DISABLED`.
fn tls_of(k: TlsKeys, shown: &str) -> Result<Option<Tls>> {
    let (verify_ca, verify_identity) = match k.mode.as_deref() {
        None | Some("VERIFY_IDENTITY") => (true, true),
        Some("VERIFY_CA") => (true, false),
        Some("REQUIRED" | "PREFERRED") => (false, false),
        Some("DISABLED") => return Ok(None),
        Some(other) => {
            return Err(Error::usage(format!(
                "--mysql-conf {shown}: ssl-mode '{other}' is not one of DISABLED, REQUIRED, \
                 VERIFY_CA, VERIFY_IDENTITY"
            )));
        }
    };
    let asked = k.mode.is_some() || k.ca.is_some() || k.cert.is_some() || k.on == Some(true);
    if k.on == Some(false) || !asked {
        return Ok(None);
    }
    let identity = match (k.cert, k.key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(Error::usage(format!(
                "--mysql-conf {shown}: ssl-cert and ssl-key go together (a client certificate \
                 and its key)"
            )));
        }
    };
    Ok(Some(Tls { ca: k.ca, identity, verify_ca, verify_identity }))
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
    fn tls_keys() {
        let c = parse("user=a\nssl-ca=/etc/ca.pem\n", "f").unwrap();
        let want = Tls {
            ca: Some("/etc/ca.pem".into()),
            verify_ca: true,
            verify_identity: true,
            ..Default::default()
        };
        assert_eq!(c.tls, Some(want));
        let c = parse("user=a\nssl_mode=required\n", "f").unwrap();
        assert_eq!(c.tls.map(|t| (t.verify_ca, t.verify_identity)), Some((false, false)));
        let c = parse("user=a\nssl-mode=VERIFY_CA\nssl-cert=c\nssl-key=k\n", "f").unwrap();
        let t = c.tls.unwrap();
        assert_eq!((t.verify_ca, t.verify_identity), (true, false));
        assert_eq!(t.identity, Some(("c".into(), "k".into())));
        assert_eq!(
            parse("user=a\nssl=1\n", "f").unwrap().tls.map(|t| t.verify_identity),
            Some(true)
        );
        assert_eq!(parse("user=a\nssl=0\nssl-ca=x\n", "f").unwrap().tls, None);
        assert_eq!(parse("user=a\nssl-mode=DISABLED\nssl-ca=x\n", "f").unwrap().tls, None);
        assert_eq!(parse("user=a\n", "f").unwrap().tls, None);
        assert!(
            parse("user=a\nssl-cert=c\n", "f").unwrap_err().to_string().contains("go together")
        );
        assert!(parse("user=a\nssl-mode=maybe\n", "f").unwrap_err().to_string().contains("MAYBE"));
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
