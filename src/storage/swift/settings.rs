//! Where the Swift credentials come from, as the `openstack` and `swift` CLIs read them: the
//! `--os-*` options (never secrets: those stay out of process arguments), an openrc file
//! (`osrc`), the `OS_*` variables (and `ST_AUTH`/`ST_USER`/`ST_KEY`), and `clouds.yaml`
//! (`OS_CLOUD`/`--os-cloud`), in that order of precedence.
//!
//! The auth version is taken as the CLIs take it: `OS_AUTH_VERSION` or
//! `OS_IDENTITY_API_VERSION` when set, else the auth URL's `/v3`, `/v2.0` or `/auth/v1.0`,
//! else v3 (what freezer-agent 19 assumes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::auth::{Auth, EndpointFilter, Interface, Named, Secret, V3Method};
use crate::error::{Error, Result};

/// The `--os-*` options; `None` where not given.
#[derive(Clone, Debug, Default)]
pub struct OsArgs {
    pub auth_url: Option<String>,
    pub identity_api_version: Option<String>,
    pub auth_type: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub region_name: Option<String>,
    pub interface: Option<String>,
    pub storage_url: Option<String>,
    pub cacert: Option<String>,
    pub cloud: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub trust_id: Option<String>,
    /// An openrc file (freezer-agent's `osrc`).
    pub osrc: Option<PathBuf>,
    pub insecure: bool,
}

/// What the settings come to.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub auth: Auth,
    pub endpoint: EndpointFilter,
    pub storage_url: Option<String>,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
}

type Vars = BTreeMap<String, String>;

impl OsArgs {
    fn vars(&self) -> Vars {
        let pairs = [
            ("OS_AUTH_URL", &self.auth_url),
            ("OS_IDENTITY_API_VERSION", &self.identity_api_version),
            ("OS_AUTH_TYPE", &self.auth_type),
            ("OS_USERNAME", &self.username),
            ("OS_USER_ID", &self.user_id),
            ("OS_USER_DOMAIN_NAME", &self.user_domain_name),
            ("OS_USER_DOMAIN_ID", &self.user_domain_id),
            ("OS_PROJECT_NAME", &self.project_name),
            ("OS_PROJECT_ID", &self.project_id),
            ("OS_PROJECT_DOMAIN_NAME", &self.project_domain_name),
            ("OS_PROJECT_DOMAIN_ID", &self.project_domain_id),
            ("OS_REGION_NAME", &self.region_name),
            ("OS_INTERFACE", &self.interface),
            ("OS_STORAGE_URL", &self.storage_url),
            ("OS_CACERT", &self.cacert),
            ("OS_APPLICATION_CREDENTIAL_ID", &self.application_credential_id),
            ("OS_APPLICATION_CREDENTIAL_NAME", &self.application_credential_name),
            ("OS_TRUST_ID", &self.trust_id),
        ];
        let mut v: Vars = pairs
            .into_iter()
            .filter_map(|(k, val)| {
                val.clone().filter(|s| !s.is_empty()).map(|s| (k.to_string(), s))
            })
            .collect();
        if self.insecure {
            v.insert("OS_INSECURE".into(), "true".into());
        }
        v
    }
}

/// The variable names the settings are read from (the binary passes the process's values).
const NAMES: &[&str] = &[
    "OS_AUTH_URL",
    "OS_AUTH_VERSION",
    "OS_IDENTITY_API_VERSION",
    "OS_AUTH_TYPE",
    "OS_AUTH_METHOD",
    "OS_USERNAME",
    "OS_USER_ID",
    "OS_PASSWORD",
    "OS_USER_DOMAIN_NAME",
    "OS_USER_DOMAIN_ID",
    "OS_PROJECT_NAME",
    "OS_PROJECT_ID",
    "OS_TENANT_NAME",
    "OS_TENANT_ID",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_ID",
    "OS_DEFAULT_DOMAIN",
    "OS_REGION_NAME",
    "OS_INTERFACE",
    "OS_ENDPOINT_TYPE",
    "OS_STORAGE_URL",
    "OS_AUTH_TOKEN",
    "OS_TOKEN",
    "OS_CACERT",
    "OS_INSECURE",
    "OS_CLOUD",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_TRUST_ID",
    "OS_CLIENT_CONFIG_FILE",
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "HOME",
    "XDG_CONFIG_HOME",
];

/// Resolve the settings from `args`, the variables `env` gives, an openrc file and clouds.yaml.
pub fn resolve_auth(args: &OsArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved> {
    let env_vars: Vars = NAMES
        .iter()
        .filter_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (n.to_string(), v)))
        .collect();
    let cloud = args.cloud.clone().or_else(|| env_vars.get("OS_CLOUD").cloned());
    let mut v = match &cloud {
        Some(name) => clouds_yaml(name, &env_vars)?,
        None => Vars::new(),
    };
    v.extend(env_vars);
    if let Some(rc) = &args.osrc {
        v.extend(openrc(rc)?);
    }
    v.extend(args.vars());
    from_vars(&v)
}

fn get<'a>(v: &'a Vars, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(*n).map(String::as_str))
}

fn named(v: &Vars, id: &[&str], name: &[&str]) -> Option<Named> {
    get(v, id).map(|s| Named::Id(s.into())).or_else(|| get(v, name).map(|s| Named::Name(s.into())))
}

fn missing(what: &str, options: &str) -> Error {
    Error::usage(format!("{what} is missing: set {options}"))
}

fn from_vars(v: &Vars) -> Result<Resolved> {
    if v.contains_key("OS_TRUST_ID") {
        return Err(Error::usage(
            "--os-trust-id / OS_TRUST_ID (trust-scoped tokens) is not supported yet by this version of freezer",
        ));
    }
    let endpoint = EndpointFilter {
        region: get(v, &["OS_REGION_NAME"]).map(str::to_string),
        interface: get(v, &["OS_INTERFACE", "OS_ENDPOINT_TYPE"])
            .map(Interface::parse)
            .transpose()?
            .unwrap_or_default(),
    };
    let storage_url = get(v, &["OS_STORAGE_URL"]).map(str::to_string);
    let token = get(v, &["OS_AUTH_TOKEN", "OS_TOKEN"]).map(Secret::new);
    let auth = match get(v, &["OS_AUTH_URL"]) {
        Some(url) => keystone_or_v1(v, url, token)?,
        None => match (get(v, &["ST_AUTH"]), token) {
            (Some(url), _) => Auth::V1 {
                url: url.into(),
                user: get(v, &["ST_USER"])
                    .ok_or_else(|| missing("the Swift user", "ST_USER"))?
                    .into(),
                key: Secret::new(
                    get(v, &["ST_KEY"]).ok_or_else(|| missing("the Swift key", "ST_KEY"))?,
                ),
            },
            (None, Some(token)) if storage_url.is_some() => Auth::Token(token),
            _ => {
                return Err(Error::usage(
                    "no Swift credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME \
                     (or source an openrc file, or pick a clouds.yaml entry with OS_CLOUD / --os-cloud, \
                     or set ST_AUTH, ST_USER and ST_KEY for tempauth)",
                ));
            }
        },
    };
    let insecure = get(v, &["OS_INSECURE"])
        .is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    Ok(Resolved {
        auth,
        endpoint,
        storage_url,
        insecure,
        ca_file: get(v, &["OS_CACERT"]).map(PathBuf::from),
    })
}

/// The auth version: given, or read from the URL, else 3.
fn version(v: &Vars, url: &str) -> Result<u8> {
    if let Some(given) = get(v, &["OS_AUTH_VERSION", "OS_IDENTITY_API_VERSION"]) {
        return match given.trim().trim_start_matches('v') {
            "1" | "1.0" => Ok(1),
            "2" | "2.0" => Ok(2),
            "3" | "3.0" => Ok(3),
            other => Err(Error::usage(format!("unknown auth version '{other}': use 1, 2 or 3"))),
        };
    }
    let path = url.trim_end_matches('/');
    Ok(if path.ends_with("/v1.0") || path.ends_with("/auth/v1") {
        1
    } else if path.ends_with("/v2.0") {
        2
    } else {
        3
    })
}

fn keystone_or_v1(v: &Vars, url: &str, token: Option<Secret>) -> Result<Auth> {
    let password = get(v, &["OS_PASSWORD"]).map(Secret::new);
    let user = get(v, &["OS_USERNAME"]);
    match version(v, url)? {
        1 => Ok(Auth::V1 {
            url: url.into(),
            user: user
                .or(get(v, &["ST_USER"]))
                .ok_or_else(|| missing("the Swift user", "OS_USERNAME or ST_USER"))?
                .into(),
            key: password
                .or_else(|| get(v, &["ST_KEY"]).map(Secret::new))
                .ok_or_else(|| missing("the Swift key", "OS_PASSWORD or ST_KEY"))?,
        }),
        2 => Ok(Auth::V2 {
            url: url.into(),
            user: user.ok_or_else(|| missing("the user", "OS_USERNAME"))?.into(),
            password: password.ok_or_else(|| missing("the password", "OS_PASSWORD"))?,
            tenant: named(
                v,
                &["OS_TENANT_ID", "OS_PROJECT_ID"],
                &["OS_TENANT_NAME", "OS_PROJECT_NAME"],
            ),
        }),
        _ => v3(v, url, token, password),
    }
}

fn v3(v: &Vars, url: &str, token: Option<Secret>, password: Option<Secret>) -> Result<Auth> {
    let kind = get(v, &["OS_AUTH_TYPE", "OS_AUTH_METHOD"]).unwrap_or("").to_ascii_lowercase();
    let user_domain = named(v, &["OS_USER_DOMAIN_ID"], &["OS_USER_DOMAIN_NAME"])
        .or_else(|| get(v, &["OS_DEFAULT_DOMAIN"]).map(|d| Named::Id(d.into())));
    let user = named(v, &["OS_USER_ID"], &["OS_USERNAME"]);
    let app = named(v, &["OS_APPLICATION_CREDENTIAL_ID"], &["OS_APPLICATION_CREDENTIAL_NAME"]);
    let method = if kind.contains("application") || (kind.is_empty() && app.is_some()) {
        V3Method::AppCredential {
            credential: app.ok_or_else(|| {
                missing("the application credential", "OS_APPLICATION_CREDENTIAL_ID")
            })?,
            user: user.map(|u| (u, user_domain.clone())),
            secret: Secret::new(get(v, &["OS_APPLICATION_CREDENTIAL_SECRET"]).ok_or_else(
                || {
                    missing(
                        "the application credential's secret",
                        "OS_APPLICATION_CREDENTIAL_SECRET",
                    )
                },
            )?),
        }
    } else if kind.contains("token") || (kind.is_empty() && password.is_none() && token.is_some()) {
        V3Method::Token(token.ok_or_else(|| missing("the token", "OS_AUTH_TOKEN"))?)
    } else {
        V3Method::Password {
            user: user.ok_or_else(|| missing("the user", "OS_USERNAME or OS_USER_ID"))?,
            user_domain,
            password: password.ok_or_else(|| missing("the password", "OS_PASSWORD (in the environment, an openrc file or clouds.yaml; never on the command line)"))?,
        }
    };
    let project_domain = named(v, &["OS_PROJECT_DOMAIN_ID"], &["OS_PROJECT_DOMAIN_NAME"])
        .or_else(|| get(v, &["OS_DEFAULT_DOMAIN"]).map(|d| Named::Id(d.into())));
    Ok(Auth::V3 {
        url: url.into(),
        method,
        project: named(
            v,
            &["OS_PROJECT_ID", "OS_TENANT_ID"],
            &["OS_PROJECT_NAME", "OS_TENANT_NAME"],
        ),
        project_domain,
    })
}

/// `export OS_X=value` lines of an openrc file; values with `$` (a prompt's variable) are left
/// to the environment.
fn openrc(path: &Path) -> Result<Vars> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read the openrc file {}", path.display()), e))?;
    let mut out = Vars::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        if !(key.starts_with("OS_") || key.starts_with("ST_")) || key.contains(' ') {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(value);
        if value.contains('$') {
            log::debug!(
                "{}: {key} is computed by the shell; taking it from the environment",
                path.display()
            );
            continue;
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// The `clouds.yaml` entry `name` (merged with `secure.yaml`), as `OS_*` variables.
fn clouds_yaml(name: &str, env: &Vars) -> Result<Vars> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from(".")];
    match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(x), _) => dirs.push(Path::new(x).join("openstack")),
        (None, Some(h)) => dirs.push(Path::new(h).join(".config/openstack")),
        _ => {}
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    let files: Vec<PathBuf> = match env.get("OS_CLIENT_CONFIG_FILE") {
        Some(f) => vec![PathBuf::from(f)],
        None => dirs.iter().map(|d| d.join("clouds.yaml")).collect(),
    };
    let Some(file) = files.iter().find(|f| f.is_file()) else {
        return Err(Error::usage(format!(
            "OS_CLOUD / --os-cloud is '{name}', but no clouds.yaml was found (looked for {})",
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    };
    let mut vars = cloud_entry(file, name)?.ok_or_else(|| {
        Error::usage(format!("{} has no cloud named '{name}' under `clouds:`", file.display()))
    })?;
    let secure = file.with_file_name("secure.yaml");
    if secure.is_file()
        && let Some(more) = cloud_entry(&secure, name)?
    {
        vars.extend(more);
    }
    Ok(vars)
}

fn cloud_entry(file: &Path, name: &str) -> Result<Option<Vars>> {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| Error::usage(format!("{} is not valid YAML: {e}", file.display())))?;
    let Some(doc) = docs.first() else { return Ok(None) };
    let cloud = &doc["clouds"][name];
    if cloud.is_badvalue() {
        return Ok(None);
    }
    let text_of = |y: &Yaml| match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    let mut out = Vars::new();
    if let Yaml::Hash(auth) = &cloud["auth"] {
        for (k, val) in auth {
            if let (Some(k), Some(val)) = (k.as_str(), text_of(val)) {
                out.insert(format!("OS_{}", k.to_ascii_uppercase()), val);
            }
        }
    }
    for (key, var) in [
        ("region_name", "OS_REGION_NAME"),
        ("interface", "OS_INTERFACE"),
        ("identity_api_version", "OS_IDENTITY_API_VERSION"),
        ("auth_type", "OS_AUTH_TYPE"),
        ("cacert", "OS_CACERT"),
    ] {
        if let Some(val) = text_of(&cloud[key]) {
            out.insert(var.into(), val);
        }
    }
    if cloud["verify"].as_bool() == Some(false) {
        out.insert("OS_INSECURE".into(), "true".into());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn version_follows_the_clis() {
        let v = |url: &str, given: Option<&str>| {
            let mut vars = Vars::new();
            if let Some(g) = given {
                vars.insert("OS_IDENTITY_API_VERSION".into(), g.into());
            }
            version(&vars, url).unwrap()
        };
        assert_eq!(v("http://k:5000/v3", None), 3);
        assert_eq!(v("http://k:5000/v3/", None), 3);
        assert_eq!(v("http://k:5000", None), 3);
        assert_eq!(v("http://k:5000/v2.0", None), 2);
        assert_eq!(v("http://s:8080/auth/v1.0", None), 1);
        assert_eq!(v("http://k:5000/v2.0", Some("3")), 3);
    }

    #[test]
    fn agent_style_environment_is_v3_password() {
        let e = [
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "demo"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionTwo"),
            ("OS_ENDPOINT_TYPE", "internalURL"),
        ];
        let r = resolve_auth(&OsArgs::default(), &env(&e)).unwrap();
        match r.auth {
            Auth::V3 {
                method: V3Method::Password { user, user_domain, .. },
                project,
                project_domain,
                ..
            } => {
                assert_eq!(user, Named::Name("demo".into()));
                assert_eq!(user_domain, Some(Named::Name("Default".into())));
                assert_eq!(project, Some(Named::Name("demo".into())));
                assert_eq!(project_domain, Some(Named::Name("Default".into())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.endpoint.region.as_deref(), Some("RegionTwo"));
        assert_eq!(r.endpoint.interface, Interface::Internal);
    }

    #[test]
    fn options_win_over_the_environment() {
        let e = [
            ("OS_AUTH_URL", "http://k/v3"),
            ("OS_USERNAME", "a"),
            ("OS_PASSWORD", "p"),
            ("OS_PROJECT_ID", "x"),
        ];
        let args = OsArgs {
            project_id: Some("y".into()),
            username: Some("b".into()),
            ..Default::default()
        };
        let Auth::V3 { method: V3Method::Password { user, .. }, project, .. } =
            resolve_auth(&args, &env(&e)).unwrap().auth
        else {
            panic!()
        };
        assert_eq!(user, Named::Name("b".into()));
        assert_eq!(project, Some(Named::Id("y".into())));
    }

    #[test]
    fn tempauth_and_tokens() {
        let st = [("ST_AUTH", "http://s/auth/v1.0"), ("ST_USER", "t:u"), ("ST_KEY", "k")];
        assert!(matches!(
            resolve_auth(&OsArgs::default(), &env(&st)).unwrap().auth,
            Auth::V1 { .. }
        ));
        let os1 =
            [("OS_AUTH_URL", "http://s/auth/v1.0"), ("OS_USERNAME", "t:u"), ("OS_PASSWORD", "k")];
        assert!(matches!(
            resolve_auth(&OsArgs::default(), &env(&os1)).unwrap().auth,
            Auth::V1 { .. }
        ));
        let tok = [("OS_AUTH_TOKEN", "t"), ("OS_STORAGE_URL", "http://s/v1/AUTH_x")];
        assert!(matches!(
            resolve_auth(&OsArgs::default(), &env(&tok)).unwrap().auth,
            Auth::Token(_)
        ));
        let app = [
            ("OS_AUTH_URL", "http://k/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "i"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
        ];
        let r = resolve_auth(&OsArgs::default(), &env(&app)).unwrap();
        assert!(matches!(r.auth, Auth::V3 { method: V3Method::AppCredential { .. }, .. }));
    }

    #[test]
    fn missing_things_are_named() {
        let err = resolve_auth(&OsArgs::default(), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("OS_AUTH_URL"), "{err}");
        let e = [("OS_AUTH_URL", "http://k/v3"), ("OS_USERNAME", "a")];
        let err = resolve_auth(&OsArgs::default(), &env(&e)).unwrap_err();
        assert!(err.to_string().contains("OS_PASSWORD"), "{err}");
    }

    #[test]
    fn openrc_and_clouds_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("demo.openrc");
        std::fs::write(&rc, "#!/bin/sh\nexport OS_AUTH_URL=http://k/v3\nexport OS_USERNAME=\"demo\"\n\
            echo 'Please enter your password'\nread -sr OS_PASSWORD_INPUT\nexport OS_PASSWORD=$OS_PASSWORD_INPUT\n\
            export OS_PROJECT_NAME='demo'\n").unwrap();
        let args = OsArgs { osrc: Some(rc), ..Default::default() };
        let r = resolve_auth(&args, &env(&[("OS_PASSWORD", "from-env")])).unwrap();
        assert!(
            matches!(r.auth, Auth::V3 { project: Some(Named::Name(ref p)), .. } if p == "demo")
        );

        let cfg = dir.path().join("openstack");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("clouds.yaml"), "clouds:\n  mine:\n    auth:\n      auth_url: http://k/v3\n      \
            username: u\n      project_id: p1\n      user_domain_name: D\n    region_name: R\n    verify: false\n").unwrap();
        std::fs::write(
            cfg.join("secure.yaml"),
            "clouds:\n  mine:\n    auth:\n      password: s3cret\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let e = [("XDG_CONFIG_HOME", home), ("OS_CLOUD", "mine")];
        let r = resolve_auth(&OsArgs::default(), &env(&e)).unwrap();
        assert!(r.insecure);
        assert_eq!(r.endpoint.region.as_deref(), Some("R"));
        let Auth::V3 { method: V3Method::Password { password, .. }, project, .. } = r.auth else {
            panic!()
        };
        assert_eq!(password.expose(), "s3cret");
        assert_eq!(project, Some(Named::Id("p1".into())));
        let e = [("XDG_CONFIG_HOME", home), ("OS_CLOUD", "other")];
        let err = resolve_auth(&OsArgs::default(), &env(&e)).unwrap_err();
        assert!(err.to_string().contains("no cloud named 'other'"), "{err}");
    }
}
