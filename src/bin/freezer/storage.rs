//! `--storage`: the storage a run writes to, and the view it reads through.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use freezer::storage::ftp::{FtpOptions, FtpStorage, TlsOptions};
use freezer::storage::local::LocalStorage;
use freezer::storage::swift::{self, OsArgs, SwiftOptions, SwiftStorage};
use freezer::storage::{Storage, StorageWrite};

use crate::cli::{FtpFlags, StorageKind, SwiftFlags};

fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
}

/// The storage `--storage` names, and the view restores and listings read through.
pub fn open(
    kind: StorageKind,
    swift: &SwiftFlags,
    ftp: &FtpFlags,
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
            let swift = swift_storage(swift, container)?;
            Ok((Arc::new(swift.clone()), Arc::new(swift::Freezerc1View::new(swift))))
        }
        StorageKind::Ftp | StorageKind::Ftps => {
            let ftp = Arc::new(ftp_storage(kind == StorageKind::Ftps, ftp, swift, container)?);
            Ok((ftp.clone(), ftp))
        }
        other => {
            let name = format!("{other:?}").to_lowercase();
            bail!(usage(&format!(
                "--storage {name} is not supported yet by this version; use --storage local or swift"
            )))
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
    let retry = swift::RetryPolicy {
        retries: f.storage_retries,
        stall: std::time::Duration::from_secs(f.storage_timeout.max(1)),
        ..Default::default()
    };
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

/// FTP or FTPS from the --ftp-* options; the password also from FREEZER_FTP_PASSWORD.
fn ftp_storage(
    tls: bool,
    f: &FtpFlags,
    swift: &SwiftFlags,
    container: String,
) -> Result<FtpStorage> {
    if password_on_command_line() {
        log::warn!(
            "--ftp-password on the command line can be read by every user of this host (ps); \
             put ftp_password in a --config file readable only by you, or set \
             FREEZER_FTP_PASSWORD"
        );
    }
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

/// Whether the real command line (not a --config file) holds --ftp-password, or a prefix of
/// it that only it has (`--ftp-pa`).
fn password_on_command_line() -> bool {
    let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned());
    args.take_while(|a| a != "--").any(|a| {
        let name = a.split('=').next().unwrap_or_default();
        name.len() >= "--ftp-pa".len() && "--ftp-password".starts_with(name)
    })
}
