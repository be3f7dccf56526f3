//! `--storage ssh` options, with freezer-agent's names.

use std::path::PathBuf;

use clap::Args;
use freezer::storage::swift::Secret;

/// SSH/SFTP settings (`--storage ssh`; the container is the remote directory).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "SSH")]
pub struct SftpFlags {
    /// SSH server name or address.
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Option<String>,
    /// Login name on the SSH server.
    #[arg(long, value_name = "USER")]
    pub ssh_username: Option<String>,
    /// Private key file (default ~/.ssh/id_rsa, else ~/.ssh/id_ed25519).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// SSH server port.
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub ssh_port: u16,
    /// Log in with this password instead of a key. Visible to other users in `ps` when given
    /// on the command line: put `ssh_password` in a --config file, or set
    /// FREEZER_SSH_PASSWORD.
    #[arg(long, value_name = "PASSWORD", value_parser = secret)]
    pub ssh_password: Option<Secret>,
    /// Check the server's host key against FILE (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Add an unknown host key to the known_hosts file and go on (a changed key is always
    /// refused). Check the fingerprint it logs.
    #[arg(long)]
    pub ssh_accept_new_host_key: bool,
}

/// Held as a [`Secret`], so that `Debug` output of the options never shows it.
fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}
