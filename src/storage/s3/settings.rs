//! Where the S3 settings come from, strongest first: freezer-agent's options (`--access-key`,
//! `--secret-key`, `--endpoint`), then its variables (`ACCESS_KEY`, `SECRET_KEY`, `ENDPOINT`),
//! then the AWS ones (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), then the
//! profile (`AWS_PROFILE`, else `default`) in `~/.aws/credentials` and `~/.aws/config`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::swift::Secret;

/// How buckets are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `https://endpoint/bucket/key`: what most S3-compatible servers want.
    Path,
    /// `https://bucket.endpoint/key`: AWS's default.
    VirtualHost,
}

/// What the command line gave.
#[derive(Clone, Debug, Default)]
pub struct S3Args {
    /// `--access-key`.
    pub access_key: Option<String>,
    /// `--secret-key` (visible in `ps`: the binary warns).
    pub secret_key: Option<Secret>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--s3-region`.
    pub region: Option<String>,
    /// `--s3-addressing`.
    pub addressing: Option<Addressing>,
}

/// Everything needed to talk to one S3 service.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// The service's base URL.
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// Path-style or virtual-host URLs.
    pub addressing: Addressing,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: Secret,
    /// A temporary credential's session token.
    pub session_token: Option<Secret>,
    /// A CA bundle to trust instead of the system's (`AWS_CA_BUNDLE`).
    pub ca_file: Option<PathBuf>,
}

/// Resolve the settings; `env` reads a variable (the process environment in the binary).
pub fn resolve(args: &S3Args, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Settings> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let profile_name = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let home = var("HOME").map(PathBuf::from);
    let aws_file = |var_name: &str, file: &str| {
        var(var_name)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(file)))
    };
    let creds = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .map(|p| profile(&p, &profile_name))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let config_section = if profile_name == "default" {
        "default".into()
    } else {
        format!("profile {profile_name}")
    };
    let config = aws_file("AWS_CONFIG_FILE", "config")
        .map(|p| profile(&p, &config_section))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let from_profile =
        |key: &str| creds.iter().chain(&config).find(|(k, _)| k == key).map(|(_, v)| v.clone());

    // A key and its secret (and token) come from the same place, never mixed.
    let (access_key, secret_key, session_token) = if let Some(key) = args.access_key.clone() {
        let secret = args.secret_key.clone().or_else(|| var("SECRET_KEY").map(Secret::new));
        (Some(key), secret, None)
    } else if let Some(key) = var("ACCESS_KEY") {
        let secret = args.secret_key.clone().or_else(|| var("SECRET_KEY").map(Secret::new));
        (Some(key), secret, None)
    } else if let Some(key) = var("AWS_ACCESS_KEY_ID") {
        let secret =
            args.secret_key.clone().or_else(|| var("AWS_SECRET_ACCESS_KEY").map(Secret::new));
        (Some(key), secret, var("AWS_SESSION_TOKEN").map(Secret::new))
    } else {
        let secret = args
            .secret_key
            .clone()
            .or_else(|| from_profile("aws_secret_access_key").map(Secret::new));
        (
            from_profile("aws_access_key_id"),
            secret,
            from_profile("aws_session_token").map(Secret::new),
        )
    };
    let Some(access_key) = access_key else {
        return Err(Error::usage(format!(
            "no S3 access key: give --access-key (or set ACCESS_KEY or AWS_ACCESS_KEY_ID, or \
             aws_access_key_id in profile '{profile_name}' of ~/.aws/credentials)"
        )));
    };
    let Some(secret_key) = secret_key else {
        return Err(Error::usage(
            "no S3 secret key for the access key given: set SECRET_KEY or AWS_SECRET_ACCESS_KEY, \
             or put secret_key in the --config file (on the command line, --secret-key is \
             visible to every user of the machine)",
        ));
    };
    let region = args
        .region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| from_profile("region"))
        .unwrap_or_else(|| "us-east-1".into());
    let given = args
        .endpoint
        .clone()
        .or_else(|| var("ENDPOINT"))
        .or_else(|| var("AWS_ENDPOINT_URL_S3"))
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .or_else(|| from_profile("endpoint_url"));
    // Path-style by default when an endpoint is given: S3-compatible servers expect it.
    let addressing = args.addressing.unwrap_or(if given.is_some() {
        Addressing::Path
    } else {
        Addressing::VirtualHost
    });
    let endpoint = given.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    let endpoint = endpoint.trim_end_matches('/').to_string();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(Error::usage(format!(
            "invalid S3 endpoint '{endpoint}': give a URL such as https://s3.example.com:8080"
        )));
    }
    Ok(S3Settings {
        endpoint,
        region,
        addressing,
        access_key,
        secret_key,
        session_token,
        ca_file: var("AWS_CA_BUNDLE").map(PathBuf::from),
    })
}

/// The `key = value` pairs of `[section]` in an AWS INI file; `None` if the file or the
/// section is absent.
fn profile(path: &Path, section: &str) -> Result<Option<Vec<(String, String)>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let mut found = None;
    let mut current = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim() == section;
            if current {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current && let Some((k, v)) = line.split_once('=') {
            let pairs = found.get_or_insert_with(Vec::new);
            pairs.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn agent_variables_come_before_aws_ones() {
        let e = env(&[
            ("ACCESS_KEY", "agent"),
            ("SECRET_KEY", "agent-secret"),
            ("ENDPOINT", "http://127.0.0.1:9000/"),
            ("AWS_ACCESS_KEY_ID", "aws"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("HOME", "/nonexistent"),
        ]);
        let s = resolve(&S3Args::default(), &e).unwrap();
        assert_eq!(s.access_key, "agent");
        assert_eq!(s.secret_key.expose(), "agent-secret");
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s.addressing, Addressing::Path, "an endpoint means path-style");
        assert_eq!(s.region, "us-east-1");
    }

    #[test]
    fn a_profile_gives_keys_region_and_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\n[ops]\n\
             aws_access_key_id = o\naws_secret_access_key = os\naws_session_token = ot\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[profile ops]\nregion = eu-west-3\n")
            .unwrap();
        let home = dir.path().to_str().unwrap();
        let s =
            resolve(&S3Args::default(), &env(&[("HOME", home), ("AWS_PROFILE", "ops")])).unwrap();
        assert_eq!((s.access_key.as_str(), s.secret_key.expose()), ("o", "os"));
        assert_eq!(s.session_token.unwrap().expose(), "ot");
        assert_eq!(s.region, "eu-west-3");
        assert_eq!(s.endpoint, "https://s3.eu-west-3.amazonaws.com");
        assert_eq!(s.addressing, Addressing::VirtualHost);
    }

    #[test]
    fn missing_keys_say_where_to_put_them() {
        let e = env(&[("HOME", "/nonexistent")]);
        let err = resolve(&S3Args::default(), &e).unwrap_err().to_string();
        assert!(err.contains("--access-key") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        let args = S3Args { access_key: Some("k".into()), ..Default::default() };
        let err = resolve(&args, &e).unwrap_err().to_string();
        assert!(err.contains("SECRET_KEY") && err.contains("--config"), "{err}");
    }
}
