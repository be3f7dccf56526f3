//! freezer-agent's FTP/FTPS options (`--storage ftp|ftps`), with its names.

use std::path::PathBuf;

use clap::Args;
use freezer::storage::swift::Secret;

/// FTP and FTPS settings; the container is the directory on the server.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "FTP")]
pub struct FtpFlags {
    /// FTP server host name or address.
    #[arg(long, value_name = "HOST")]
    pub ftp_host: Option<String>,
    /// User to log in as.
    #[arg(long, value_name = "USER")]
    pub ftp_username: Option<String>,
    /// Password (visible in `ps` on the command line: prefer ftp_password in a --config file,
    /// or the FREEZER_FTP_PASSWORD environment variable).
    #[arg(long, value_name = "PASSWORD", value_parser = secret)]
    pub ftp_password: Option<Secret>,
    /// Control port.
    #[arg(long, value_name = "PORT", default_value_t = 21)]
    pub ftp_port: u16,
    /// FTPS: with --ftp-certfile, the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub ftp_keyfile: Option<PathBuf>,
    /// FTPS: a PEM file of CA certificates to trust besides the system's (or, with
    /// --ftp-keyfile, the client certificate to present).
    #[arg(long, value_name = "FILE")]
    pub ftp_certfile: Option<PathBuf>,
}

fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// By hand, so the password never shows (the derived form would print it).
impl std::fmt::Debug for FtpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpFlags")
            .field("ftp_host", &self.ftp_host)
            .field("ftp_username", &self.ftp_username)
            .field("ftp_password", &self.ftp_password.as_ref().map(|_| "<secret>"))
            .field("ftp_port", &self.ftp_port)
            .field("ftp_keyfile", &self.ftp_keyfile)
            .field("ftp_certfile", &self.ftp_certfile)
            .finish()
    }
}
