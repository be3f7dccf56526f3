//! `--storage`: the storage a run writes to, and the view it reads through.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use freezer::storage::local::LocalStorage;
use freezer::storage::s3::{self, S3Args, S3Options, S3Storage};
use freezer::storage::swift::{self, OsArgs, Secret, SwiftOptions, SwiftStorage};
use freezer::storage::{Storage, StorageWrite};

use crate::cli::{Common, S3Addressing, StorageKind, SwiftFlags};

fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
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
        other => {
            let name = format!("{other:?}").to_lowercase();
            bail!(usage(&format!(
                "--storage {name} is not supported yet by this version; use --storage local, swift or s3"
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
