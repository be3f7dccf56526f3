//! `--storage`: the storage a run writes to, and the view it reads through.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Parser;
use freezer::storage::ftp::{FtpOptions, FtpStorage, TlsOptions};
use freezer::storage::local::LocalStorage;
use freezer::storage::multi::{Member, MultiStorage, OnFailure};
use freezer::storage::s3::{self, S3Args, S3Options, S3Storage};
use freezer::storage::swift::{self, OsArgs, Secret, SwiftOptions, SwiftStorage};
use freezer::storage::{Storage, StorageWrite};

use crate::cli::{
    Cli, Common, FtpFlags, S3Addressing, SftpFlags, StorageFailure, StorageKind, SwiftFlags,
};
use crate::run::Profile;

fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
}

/// The storage a run writes to and the view it reads through, and what else the run needs to
/// know of them.
pub struct Opened {
    pub write: Arc<dyn StorageWrite>,
    pub read: Arc<dyn Storage>,
    /// Local directories among them (a backup leaves them out of its source).
    pub local_dirs: Vec<PathBuf>,
    /// The set, when `--config` has `[storage:NAME]` sections.
    pub multi: Option<MultiStorage>,
    /// Sections that could not be opened, and why (a restore or a `warn` backup goes on).
    pub unavailable: Vec<String>,
}

/// `--storage`/`--container`, or every `[storage:NAME]` section (each as its own arguments)
/// as one multi-storage, as freezer-agent does when a job file has them.
pub fn open_all(
    kind: StorageKind,
    common: &Common,
    container: String,
    profile: Profile,
    sections: Vec<(String, Vec<OsString>)>,
    reads_only: bool,
) -> Result<Opened> {
    if sections.is_empty() {
        let local_dirs = local_dir(kind, &container);
        let (write, read) = open(kind, common, container)?;
        return Ok(Opened { write, read, local_dirs, multi: None, unavailable: Vec::new() });
    }
    if common.storage.is_some() || common.container.is_some() {
        log::warn!(
            "--config has [storage:*] sections: the backup goes to those, not to --storage/--container"
        );
    }
    let mut members = Vec::new();
    let mut local_dirs = Vec::new();
    let mut unavailable = Vec::new();
    for (name, args) in sections {
        let argv = std::iter::once(OsString::from("freezer")).chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| {
            usage(&format!("--config [storage:{name}]: {}", e.render().to_string().trim()))
        })?;
        let c = cli.common;
        let kind = c.storage.unwrap_or(profile.storage());
        let container = c.container.clone().unwrap_or_else(|| profile.container().to_string());
        local_dirs.extend(local_dir(kind, &container));
        match open(kind, &c, container) {
            Ok((storage, _)) => members.push(Member { name, storage }),
            // A storage that cannot be reached must not hide the others' copies from a
            // restore, nor (with warn) stop a backup to the others.
            Err(e) if reads_only || common.storage_failure == StorageFailure::Warn => {
                log::warn!("--config [storage:{name}]: {e:#}; going on without it");
                unavailable.push(format!("[storage:{name}]: {e:#}"));
            }
            Err(e) => return Err(e.context(format!("--config [storage:{name}]"))),
        }
    }
    if members.is_empty() {
        bail!("none of the --config [storage:*] storages can be used (see the warnings above)");
    }
    let on_failure = match common.storage_failure {
        StorageFailure::Fail => OnFailure::Fail,
        StorageFailure::Warn => OnFailure::Warn,
    };
    let multi = MultiStorage::new(members, on_failure)?;
    let write: Arc<dyn StorageWrite> = Arc::new(multi.clone());
    Ok(Opened { read: write.clone(), write, local_dirs, multi: Some(multi), unavailable })
}

fn local_dir(kind: StorageKind, container: &str) -> Vec<PathBuf> {
    match kind {
        StorageKind::Local => vec![PathBuf::from(container)],
        _ => Vec::new(),
    }
}

/// The storage `--storage` names, and the view restores and listings read through.
pub fn open(
    kind: StorageKind,
    common: &Common,
    container: String,
) -> Result<(Arc<dyn StorageWrite>, Arc<dyn Storage>)> {
    match kind {
        StorageKind::Local => {
            let given = Path::new(&container);
            let path = std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf());
            if given.is_relative() {
                log::warn!(
                    "the container '{container}' is a relative path: it is the local directory \
                     {} (from the current directory); give an absolute path{}",
                    path.display(),
                    if container.contains('/') {
                        ""
                    } else {
                        ", or --storage swift if it is a Swift container"
                    }
                );
            }
            let local = Arc::new(LocalStorage::new(&path)?);
            Ok((local.clone(), local))
        }
        StorageKind::Swift => {
            let swift = swift_storage(&common.swift, container)?;
            Ok((Arc::new(swift.clone()), Arc::new(swift::Freezerc1View::new(swift))))
        }
        StorageKind::S3 => {
            let s3 = Arc::new(s3_storage(common, container)?);
            Ok((s3.clone(), s3))
        }
        StorageKind::Ftp | StorageKind::Ftps => {
            let ftps = kind == StorageKind::Ftps;
            let ftp = Arc::new(ftp_storage(ftps, &common.ftp, &common.swift, container)?);
            Ok((ftp.clone(), ftp))
        }
        StorageKind::Ssh => {
            let sftp = Arc::new(sftp_storage(&common.sftp, &common.swift, container)?);
            Ok((sftp.clone(), sftp))
        }
    }
}

/// Swift from the --os-* options, the environment, an openrc file or clouds.yaml.
fn swift_storage(f: &SwiftFlags, container: String) -> Result<SwiftStorage> {
    let args = OsArgs {
        auth_url: f.os_auth_url.clone(),
        identity_api_version: f.os_identity_api_version.clone(),
        auth_type: f.os_auth_type.clone(),
        username: f.os_username.clone(),
        user_id: f.os_user_id.clone(),
        user_domain_name: f.os_user_domain_name.clone(),
        user_domain_id: f.os_user_domain_id.clone(),
        project_name: f.os_project_name.clone(),
        project_id: f.os_project_id.clone(),
        project_domain_name: f.os_project_domain_name.clone(),
        project_domain_id: f.os_project_domain_id.clone(),
        region_name: f.os_region_name.clone(),
        interface: f.os_interface.clone(),
        storage_url: f.os_storage_url.clone(),
        cacert: f.os_cacert.clone(),
        cloud: f.os_cloud.clone(),
        application_credential_id: f.os_application_credential_id.clone(),
        application_credential_name: f.os_application_credential_name.clone(),
        trust_id: f.os_trust_id.clone(),
        osrc: f.osrc.clone(),
        insecure: f.insecure,
    };
    let resolved = swift::resolve_auth(&args, &|name| std::env::var(name).ok())?;
    if f.upload_concurrency == 0 {
        bail!(usage("--upload-concurrency must be at least 1"));
    }
    let retry = retry_policy(f);
    Ok(SwiftStorage::new(SwiftOptions {
        auth: resolved.auth,
        endpoint: resolved.endpoint,
        storage_url: resolved.storage_url,
        transport: swift::Transport {
            insecure: resolved.insecure,
            ca_file: resolved.ca_file,
            proxy: f.proxy.clone(),
        },
        retry,
        container,
        concurrency: f.upload_concurrency,
    })?)
}

/// `--storage-retries` and `--storage-timeout`, for the network storages.
fn retry_policy(f: &SwiftFlags) -> swift::RetryPolicy {
    swift::RetryPolicy {
        retries: f.storage_retries,
        stall: std::time::Duration::from_secs(f.storage_timeout.max(1)),
        ..Default::default()
    }
}

/// S3 from --access-key/--secret-key/--endpoint, freezer-agent's variables, the AWS ones or
/// `~/.aws`.
fn s3_storage(common: &Common, container: String) -> Result<S3Storage> {
    let f = &common.s3;
    let args = S3Args {
        access_key: f.access_key.clone(),
        secret_key: f.secret_key.clone().map(Secret::new),
        endpoint: f.endpoint.clone(),
        region: f.s3_region.clone(),
        addressing: f.s3_addressing.map(|a| match a {
            S3Addressing::Path => s3::Addressing::Path,
            S3Addressing::Virtual => s3::Addressing::VirtualHost,
        }),
    };
    let settings = s3::resolve(&args, &|name| std::env::var(name).ok())?;
    let net = &common.swift;
    if net.upload_concurrency == 0 {
        bail!(usage("--upload-concurrency must be at least 1"));
    }
    Ok(S3Storage::new(S3Options {
        settings,
        transport: swift::Transport {
            insecure: net.insecure,
            ca_file: None,
            proxy: net.proxy.clone(),
        },
        retry: retry_policy(net),
        container,
        concurrency: net.upload_concurrency,
    })?)
}
/// FTP or FTPS from the --ftp-* options; the password also from FREEZER_FTP_PASSWORD.
fn ftp_storage(
    tls: bool,
    f: &FtpFlags,
    swift: &SwiftFlags,
    container: String,
) -> Result<FtpStorage> {
    let kind = if tls { "ftps" } else { "ftp" };
    let password = f
        .ftp_password
        .clone()
        .or_else(|| std::env::var("FREEZER_FTP_PASSWORD").ok().map(swift::Secret::new))
        .ok_or_else(|| {
            usage(&format!(
                "--storage {kind} needs the FTP password: ftp_password in a --config file, or \
                 the FREEZER_FTP_PASSWORD environment variable"
            ))
        })?;
    let tls = match (tls, &f.ftp_keyfile, &f.ftp_certfile) {
        (false, None, None) => None,
        (false, ..) => {
            log::warn!("--ftp-keyfile and --ftp-certfile apply to --storage ftps only; ignored");
            None
        }
        (true, Some(key), Some(cert)) => {
            Some(TlsOptions { ca_file: None, client_cert: Some((cert.clone(), key.clone())) })
        }
        (true, Some(_), None) => bail!(usage(
            "--ftp-keyfile needs --ftp-certfile (the client certificate that goes with the key)"
        )),
        (true, None, ca) => Some(TlsOptions { ca_file: ca.clone(), client_cert: None }),
    };
    if swift.upload_concurrency == 0 {
        bail!(usage("--upload-concurrency must be at least 1"));
    }
    Ok(FtpStorage::new(FtpOptions {
        host: f.ftp_host.clone().unwrap_or_default(),
        port: f.ftp_port,
        user: f.ftp_username.clone().unwrap_or_default(),
        password,
        tls,
        container,
        timeout: std::time::Duration::from_secs(swift.storage_timeout.max(1)),
        retries: swift.storage_retries,
        concurrency: swift.upload_concurrency,
    })?)
}
/// SFTP from the --ssh-* options. The password comes from --ssh-password (best from a --config
/// file: on the command line every user sees it in `ps`) or FREEZER_SSH_PASSWORD.
fn sftp_storage(
    f: &SftpFlags,
    swift: &SwiftFlags,
    container: String,
) -> Result<freezer::storage::sftp::SftpStorage> {
    use freezer::storage::sftp::{SftpAuth, SftpOptions, SftpStorage};
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let in_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
    let password = match &f.ssh_password {
        Some(p) => Some(p.clone()),
        None => std::env::var("FREEZER_SSH_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(swift::Secret::new),
    };
    let auth = match (password, &f.ssh_key) {
        (Some(p), _) => SftpAuth::Password(p),
        (None, Some(key)) => SftpAuth::Keys(vec![key.clone()]),
        // freezer-agent's default, then the key type ssh-keygen makes today.
        (None, None) => SftpAuth::Keys(
            [".ssh/id_rsa", ".ssh/id_ed25519"].iter().filter_map(|r| in_home(r)).collect(),
        ),
    };
    let known_hosts = match &f.ssh_known_hosts {
        Some(p) => p.clone(),
        None => in_home(".ssh/known_hosts")
            .ok_or_else(|| usage("HOME is not set: give --ssh-known-hosts FILE"))?,
    };
    let need = |v: &Option<String>, opt: &str| {
        v.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
            usage(&format!("--storage ssh needs {opt} (the SSH server's {})", &opt[6..]))
        })
    };
    Ok(SftpStorage::connect(&SftpOptions {
        host: need(&f.ssh_host, "--ssh-host")?,
        port: f.ssh_port,
        username: need(&f.ssh_username, "--ssh-username")?,
        auth,
        known_hosts,
        accept_new_host_key: f.ssh_accept_new_host_key,
        container,
        parallel_reads: swift.upload_concurrency.max(1),
        timeout: std::time::Duration::from_secs(swift.storage_timeout.max(1)),
    })?)
}
