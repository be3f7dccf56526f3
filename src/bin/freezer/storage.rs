//! `--storage`: the storage a run writes to, and the view it reads through.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use freezer::storage::local::LocalStorage;
use freezer::storage::swift::{self, OsArgs, SwiftOptions, SwiftStorage};
use freezer::storage::{Storage, StorageWrite};

use crate::cli::{SftpFlags, StorageKind, SwiftFlags};

fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
}

/// The storage `--storage` names, and the view restores and listings read through.
pub fn open(
    kind: StorageKind,
    swift: &SwiftFlags,
    sftp: &SftpFlags,
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
        StorageKind::Ssh => {
            let sftp = Arc::new(sftp_storage(sftp, swift, container)?);
            Ok((sftp.clone(), sftp))
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
        Some(p) => {
            if password_in_argv() {
                log::warn!(
                    "--ssh-password on the command line is visible to every user of this host \
                     (ps, /proc); put ssh_password in a --config file readable only by you, or \
                     set FREEZER_SSH_PASSWORD"
                );
            }
            Some(p.clone())
        }
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

/// Whether --ssh-password (or a unique prefix of it) is on the real command line, not only in a
/// --config file.
fn password_in_argv() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| {
        let a = a.to_string_lossy();
        let name = a.split_once('=').map_or(&*a, |(n, _)| n);
        name.len() >= "--ssh-pa".len() && "--ssh-password".starts_with(name)
    })
}
