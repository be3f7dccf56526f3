//! The server's host key, checked against a known_hosts file as OpenSSH does with
//! `StrictHostKeyChecking=yes` (or `accept-new` when asked): an unknown key is refused, naming
//! its fingerprint; a changed one is always refused. Entries are `host` on port 22 and
//! `[host]:port` otherwise, plain or hashed (`|1|salt|hash`), as `ssh-keyscan` writes them.

use std::borrow::Cow;
use std::path::PathBuf;

use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate, known_hosts};

use crate::error::{Error, Result};

/// Where host keys are checked, and whether an unknown one may be added.
#[derive(Clone, Debug)]
pub(super) struct HostKeys {
    pub host: String,
    pub port: u16,
    pub file: PathBuf,
    pub accept_new: bool,
}

/// A failed connection: russh's own error, or one of ours (a refused key, a failed login).
#[derive(Debug)]
pub(super) enum ConnectError {
    Ssh(russh::Error),
    Ours(Error),
}

impl From<russh::Error> for ConnectError {
    fn from(e: russh::Error) -> ConnectError {
        ConnectError::Ssh(e)
    }
}

/// The russh client handler: only the host key check.
pub(super) struct Checker(pub HostKeys);

impl russh::client::Handler for Checker {
    type Error = ConnectError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, ConnectError> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.0.check(key).map(|()| true).map_err(ConnectError::Ours)
            }
            PublicKeyOrCertificate::Certificate(_) => {
                Err(ConnectError::Ours(Error::usage(format!(
                    "{} offered a host certificate; freezer checks plain host keys only",
                    self.0.at()
                ))))
            }
        }
    }
}

/// `ssh-ed25519 SHA256:…`, as `ssh-keygen -l` and OpenSSH's prompts show a key.
pub(super) fn describe_key(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

impl HostKeys {
    /// `host:port`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name the host has in known_hosts.
    fn entry_name(&self) -> Cow<'_, str> {
        match self.port {
            22 => Cow::Borrowed(&self.host),
            p => Cow::Owned(format!("[{}]:{p}", self.host)),
        }
    }

    /// The keys known_hosts records for this host.
    fn known(&self) -> Result<Vec<(usize, PublicKey)>> {
        known_hosts::known_host_keys_path(&self.host, self.port, &self.file).map_err(|e| {
            Error::usage(format!(
                "cannot read the known hosts file {}: {e}; fix or remove its entry for {}",
                self.file.display(),
                self.entry_name()
            ))
        })
    }

    /// Host key algorithms to ask for: the ones known_hosts has for this host first (as
    /// OpenSSH orders them), so a server with several keys shows the one we can check.
    pub fn preferred(&self) -> Vec<Algorithm> {
        let family = |a: &Algorithm| match a {
            Algorithm::Rsa { .. } => "rsa".to_string(),
            other => other.as_str().to_string(),
        };
        let known: Vec<String> =
            self.known().unwrap_or_default().iter().map(|(_, k)| family(&k.algorithm())).collect();
        let mut all = russh::Preferred::DEFAULT.key.to_vec();
        all.sort_by_key(|a| !known.contains(&family(a)));
        all
    }

    /// Accept `key` if known_hosts has it; add it when allowed and the host is unknown.
    pub fn check(&self, key: &PublicKey) -> Result<()> {
        let known = self.known()?;
        if known.iter().any(|(_, k)| k.key_data() == key.key_data()) {
            return Ok(());
        }
        if let Some((line, _)) = known.iter().find(|(_, k)| k.algorithm() == key.algorithm()) {
            return Err(self.changed(key, &format!("line {line} of {}", self.file.display())));
        }
        if !known.is_empty() {
            // Known with other key types only: accepting this one would let whoever answers
            // in the server's place choose a key type we have no record of.
            let types: Vec<String> =
                known.iter().map(|(_, k)| k.algorithm().as_str().to_string()).collect();
            let what = format!("{} (only {} keys)", self.file.display(), types.join(", "));
            return Err(self.changed(key, &what));
        }
        if !self.accept_new {
            return Err(self.unknown(key));
        }
        known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.file).map_err(
            |e| {
                Error::usage(format!(
                    "cannot add the host key of {} to {}: {e}",
                    self.at(),
                    self.file.display()
                ))
            },
        )?;
        log::warn!(
            "added the SSH host key of {} ({}) to {}",
            self.at(),
            describe_key(key),
            self.file.display()
        );
        Ok(())
    }

    fn unknown(&self, key: &PublicKey) -> Error {
        Error::usage(format!(
            "the SSH host key of {} is not known: it is {}, and {} has no entry for {}. Check \
             that fingerprint with the server's administrator (on the server: ssh-keygen -lf \
             /etc/ssh/ssh_host_{}_key.pub), then accept it with --ssh-accept-new-host-key, or \
             add it with `ssh-keyscan -p {} {} >> {}`",
            self.at(),
            describe_key(key),
            self.file.display(),
            self.entry_name(),
            short_type(key),
            self.port,
            self.host,
            self.file.display()
        ))
    }

    fn changed(&self, key: &PublicKey, recorded: &str) -> Error {
        Error::usage(format!(
            "the SSH host key of {} has CHANGED: the server now shows {}, but {recorded} \
             records another key for it. Someone may be intercepting the connection (a man in \
             the middle), or the server was reinstalled. Refused, also with \
             --ssh-accept-new-host-key; if the change is expected, remove the old key with \
             `ssh-keygen -R '{}' -f {}` and connect again",
            self.at(),
            describe_key(key),
            self.entry_name(),
            self.file.display()
        ))
    }
}

/// `ed25519`, `rsa`, `ecdsa`: the name of the server's key file.
fn short_type(key: &PublicKey) -> &'static str {
    match key.algorithm() {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::Rsa { .. } => "rsa",
        Algorithm::Ecdsa { .. } => "ecdsa",
        _ => "*",
    }
}
