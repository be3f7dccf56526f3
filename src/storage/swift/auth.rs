//! Getting a token and the storage URL: tempauth (v1), Keystone v2.0 and Keystone v3
//! (password, application credential, token), and a token given outright.
//!
//! No crate covers all three (see ARCHITECTURE.md), so the requests are written here. A
//! [`Session`] is cached and replaced before it expires, or at once after a 401.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::http::{Http, Reply};

/// A secret string (password, key, token): never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A user, project or domain, by name or by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// By name.
    Name(String),
    /// By id.
    Id(String),
}

/// Keystone's endpoint interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    /// The default.
    #[default]
    Public,
    /// On the cloud's internal network.
    Internal,
    /// Admin.
    Admin,
}

impl Interface {
    /// `public`, `publicURL`, `internal`, `internalURL`, `admin`, `adminURL`.
    pub fn parse(s: &str) -> Result<Interface> {
        match s.trim().trim_end_matches("URL") {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            other => Err(Error::usage(format!(
                "unknown endpoint interface '{other}': use public, internal or admin"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

/// How Keystone v3 is to know us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V3Method {
    /// A user's password; a user by name needs its domain.
    Password { user: Named, user_domain: Option<Named>, password: Secret },
    /// An application credential by id, or by name with its user.
    AppCredential { credential: Named, user: Option<(Named, Option<Named>)>, secret: Secret },
    /// An existing token, rescoped to the project.
    Token(Secret),
}

/// How to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// tempauth / swauth: `GET <url>` with `X-Auth-User` and `X-Auth-Key`.
    V1 { url: String, user: String, key: Secret },
    /// Keystone v2.0: a password and a tenant.
    V2 { url: String, user: String, password: Secret, tenant: Option<Named> },
    /// Keystone v3; `project` (with its domain) scopes the token.
    V3 { url: String, method: V3Method, project: Option<Named>, project_domain: Option<Named> },
    /// A token given outright; the storage URL must be given too.
    Token(Secret),
}

/// Where the object store is in Keystone's catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    pub region: Option<String>,
    pub interface: Interface,
}

/// A token and the storage URL it works for.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub token: Secret,
    pub storage_url: String,
    /// When to get a new one (a little before it expires); `None`: only after a 401.
    pub renew_at: Option<Instant>,
}

impl Auth {
    /// The URL to authenticate at, for messages.
    pub(crate) fn url(&self) -> &str {
        match self {
            Auth::V1 { url, .. } | Auth::V2 { url, .. } | Auth::V3 { url, .. } => url,
            Auth::Token(_) => "(a given token)",
        }
    }

    /// Authenticate once. `storage_url` overrides the one the service returns.
    pub(crate) fn login(
        &self,
        http: &Http,
        filter: &EndpointFilter,
        storage_url: Option<&str>,
    ) -> Result<Session> {
        let fixed = |found: String| storage_url.map(str::to_string).unwrap_or(found);
        match self {
            Auth::V1 { url, user, key } => {
                let r = http.auth_request(
                    "GET",
                    url,
                    &[("X-Auth-User", user), ("X-Auth-Key", key.expose())],
                    None,
                )?;
                if r.status == 401 || r.status == 403 {
                    return Err(refused(
                        url,
                        "the user or key is wrong (check ST_USER/ST_KEY or OS_USERNAME/OS_PASSWORD)",
                    ));
                }
                expect_ok(&r, url)?;
                let token = r.header("x-auth-token").or_else(|| r.header("x-storage-token"));
                let token = token.ok_or_else(|| bad_reply(url, "no X-Auth-Token header"))?;
                let found = r
                    .header("x-storage-url")
                    .ok_or_else(|| bad_reply(url, "no X-Storage-Url header"))?;
                let life =
                    r.header("x-auth-token-expires").and_then(|s| s.trim().parse::<f64>().ok());
                Ok(Session {
                    token: Secret::new(token),
                    storage_url: fixed(found.to_string()),
                    renew_at: life.map(renew_after),
                })
            }
            Auth::V2 { url, user, password, tenant } => {
                let mut auth = json!({"passwordCredentials": {"username": user, "password": password.expose()}});
                match tenant {
                    Some(Named::Name(n)) => auth["tenantName"] = json!(n),
                    Some(Named::Id(id)) => auth["tenantId"] = json!(id),
                    None => {}
                }
                let endpoint = format!("{}/tokens", url.trim_end_matches('/'));
                let body = json!({"auth": auth}).to_string();
                let r = http.auth_request(
                    "POST",
                    &endpoint,
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                )?;
                if r.status == 401 {
                    return Err(refused(
                        url,
                        "the user, password or tenant is wrong (check OS_USERNAME, OS_PASSWORD, OS_TENANT_NAME)",
                    ));
                }
                expect_ok(&r, url)?;
                let v = r.json(url)?;
                let access = &v["access"];
                let token = access["token"]["id"]
                    .as_str()
                    .ok_or_else(|| bad_reply(url, "no access.token.id"))?;
                let expires = access["token"]["expires"].as_str().and_then(seconds_until);
                let found = match storage_url {
                    Some(u) => u.to_string(),
                    None => v2_endpoint(&access["serviceCatalog"], filter, url)?,
                };
                Ok(Session {
                    token: Secret::new(token),
                    storage_url: found,
                    renew_at: expires.map(renew_after),
                })
            }
            Auth::V3 { url, method, project, project_domain } => {
                let session = v3_login(
                    http,
                    url,
                    method,
                    project.as_ref(),
                    project_domain.as_ref(),
                    filter,
                    storage_url,
                )?;
                Ok(session)
            }
            Auth::Token(token) => match storage_url {
                Some(u) => {
                    Ok(Session { token: token.clone(), storage_url: u.to_string(), renew_at: None })
                }
                None => Err(Error::usage(
                    "a Swift token (OS_AUTH_TOKEN) needs the storage URL too: set OS_STORAGE_URL or --os-storage-url",
                )),
            },
        }
    }
}

/// Renew at 80% of the life left, but at least a minute before the end of long ones.
fn renew_after(life_secs: f64) -> Instant {
    let life = Duration::from_secs_f64(life_secs.max(0.0));
    let margin = (life / 5).min(Duration::from_secs(60).max(life / 20));
    Instant::now() + life.saturating_sub(margin)
}

/// Seconds from now to an ISO 8601 time (Keystone's `expires_at`).
fn seconds_until(when: &str) -> Option<f64> {
    let t: jiff::Timestamp = when.parse().ok()?;
    let left = t.duration_since(jiff::Timestamp::now());
    Some(left.as_secs_f64())
}

fn v3_identity(method: &V3Method) -> Value {
    let named = |n: &Named, domain: Option<&Named>| match n {
        Named::Id(id) => json!({"id": id}),
        Named::Name(name) => json!({"name": name, "domain": domain_json(domain)}),
    };
    match method {
        V3Method::Password { user, user_domain, password } => {
            let mut u = named(user, user_domain.as_ref());
            u["password"] = json!(password.expose());
            json!({"methods": ["password"], "password": {"user": u}})
        }
        V3Method::AppCredential { credential, user, secret } => {
            let mut c = match credential {
                Named::Id(id) => json!({"id": id}),
                Named::Name(name) => json!({"name": name}),
            };
            if let Some((u, d)) = user {
                c["user"] = named(u, d.as_ref());
            }
            c["secret"] = json!(secret.expose());
            json!({"methods": ["application_credential"], "application_credential": c})
        }
        V3Method::Token(t) => json!({"methods": ["token"], "token": {"id": t.expose()}}),
    }
}

/// A domain for a name; Keystone's `default` domain when none is given.
fn domain_json(domain: Option<&Named>) -> Value {
    match domain {
        Some(Named::Name(n)) => json!({"name": n}),
        Some(Named::Id(id)) => json!({"id": id}),
        None => json!({"id": "default"}),
    }
}

fn v3_body(method: &V3Method, project: Option<&Named>, project_domain: Option<&Named>) -> Value {
    let mut auth = json!({"identity": v3_identity(method)});
    // An application credential carries its own scope.
    if let (Some(p), false) = (project, matches!(method, V3Method::AppCredential { .. })) {
        auth["scope"] = json!({"project": match p {
            Named::Id(id) => json!({"id": id}),
            Named::Name(name) => json!({"name": name, "domain": domain_json(project_domain)}),
        }});
    }
    json!({"auth": auth})
}

fn v3_login(
    http: &Http,
    url: &str,
    method: &V3Method,
    project: Option<&Named>,
    project_domain: Option<&Named>,
    filter: &EndpointFilter,
    storage_url: Option<&str>,
) -> Result<Session> {
    let endpoint = format!("{}/auth/tokens", url.trim_end_matches('/'));
    let post = |body: &Value| {
        let text = body.to_string();
        http.auth_request(
            "POST",
            &endpoint,
            &[("Content-Type", "application/json")],
            Some(text.as_bytes()),
        )
    };
    let r = post(&v3_body(method, project, project_domain))?;
    if r.status == 401 || r.status == 404 {
        // Keystone answers 401 for a wrong password and for an unknown project alike: ask
        // again without the project to tell the two apart.
        let unscoped =
            project.is_some() && post(&v3_body(method, None, None)).is_ok_and(|r| r.status == 201);
        return Err(if unscoped {
            refused(
                url,
                &format!(
                    "the credentials are right, but the project {} does not exist or the user has no \
                 role in it (check OS_PROJECT_NAME/OS_PROJECT_ID and OS_PROJECT_DOMAIN_NAME)",
                    describe_named(project)
                ),
            )
        } else {
            refused(
                url,
                "the user or password is wrong (check OS_USERNAME/OS_USER_ID, OS_PASSWORD \
                 and OS_USER_DOMAIN_NAME, or the application credential)",
            )
        });
    }
    expect_ok(&r, url)?;
    let token =
        r.header("x-subject-token").ok_or_else(|| bad_reply(url, "no X-Subject-Token header"))?;
    let v = r.json(url)?;
    let expires = v["token"]["expires_at"].as_str().and_then(seconds_until);
    let found = match storage_url {
        Some(u) => u.to_string(),
        None => v3_endpoint(&v["token"]["catalog"], filter, url)?,
    };
    Ok(Session {
        token: Secret::new(token),
        storage_url: found,
        renew_at: expires.map(renew_after),
    })
}

fn describe_named(n: Option<&Named>) -> String {
    match n {
        Some(Named::Name(n)) => format!("'{n}'"),
        Some(Named::Id(id)) => format!("with id {id}"),
        None => "(none)".into(),
    }
}

/// The object-store URL in a v3 catalog.
fn v3_endpoint(catalog: &Value, filter: &EndpointFilter, url: &str) -> Result<String> {
    let mut seen = Vec::new();
    for service in catalog.as_array().into_iter().flatten() {
        if service["type"] != "object-store" {
            continue;
        }
        for e in service["endpoints"].as_array().into_iter().flatten() {
            let region = e["region_id"].as_str().or_else(|| e["region"].as_str()).unwrap_or("");
            let interface = e["interface"].as_str().unwrap_or("");
            seen.push(format!("{interface} in {region}"));
            let region_ok = filter.region.as_deref().is_none_or(|r| r == region);
            if interface == filter.interface.name()
                && region_ok
                && let Some(u) = e["url"].as_str()
            {
                return Ok(u.to_string());
            }
        }
    }
    Err(no_endpoint(url, filter, &seen))
}

/// The object-store URL in a v2.0 catalog.
fn v2_endpoint(catalog: &Value, filter: &EndpointFilter, url: &str) -> Result<String> {
    let key = format!("{}URL", filter.interface.name());
    let mut seen = Vec::new();
    for service in catalog.as_array().into_iter().flatten() {
        if service["type"] != "object-store" {
            continue;
        }
        for e in service["endpoints"].as_array().into_iter().flatten() {
            let region = e["region"].as_str().unwrap_or("");
            seen.push(format!("{} in {region}", filter.interface.name()));
            if filter.region.as_deref().is_none_or(|r| r == region)
                && let Some(u) = e[&key].as_str()
            {
                return Ok(u.to_string());
            }
        }
    }
    Err(no_endpoint(url, filter, &seen))
}

fn no_endpoint(url: &str, filter: &EndpointFilter, seen: &[String]) -> Error {
    let wanted = match &filter.region {
        Some(r) => format!("{} endpoint in region {r}", filter.interface.name()),
        None => format!("{} endpoint", filter.interface.name()),
    };
    let found = if seen.is_empty() {
        "it has no object-store service at all".to_string()
    } else {
        format!("its object-store endpoints are: {}", seen.join(", "))
    };
    Error::usage(format!(
        "the service catalog from {url} has no object-store {wanted}; {found}. Set \
         OS_REGION_NAME / OS_INTERFACE to one it has, or give the Swift URL with OS_STORAGE_URL"
    ))
}

fn refused(url: &str, why: &str) -> Error {
    Error::new(ErrorKind::Usage, format!("authentication at {url} was refused: {why}"))
}

fn bad_reply(url: &str, what: &str) -> Error {
    Error::storage(format!("unexpected answer from {url}: {what}; is this the right auth URL?"))
}

fn expect_ok(r: &Reply, url: &str) -> Result<()> {
    if (200..300).contains(&r.status) {
        return Ok(());
    }
    let hint = if r.status == 404 {
        "; check the auth URL and its version (/v3, /v2.0, /auth/v1.0)"
    } else {
        ""
    };
    Err(Error::storage(format!("authentication at {url} failed: HTTP {}{hint}", r.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<secret>");
        let auth = Auth::V1 { url: "u".into(), user: "a:b".into(), key: s };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn v3_bodies() {
        let pw = V3Method::Password {
            user: Named::Name("demo".into()),
            user_domain: Some(Named::Name("Default".into())),
            password: Secret::new("p"),
        };
        let b = v3_body(&pw, Some(&Named::Name("demo".into())), None);
        assert_eq!(b["auth"]["identity"]["password"]["user"]["domain"]["name"], "Default");
        assert_eq!(b["auth"]["scope"]["project"]["domain"]["id"], "default");
        let by_id = v3_body(&pw, Some(&Named::Id("abc".into())), None);
        assert_eq!(by_id["auth"]["scope"]["project"], json!({"id": "abc"}));
        let app = V3Method::AppCredential {
            credential: Named::Id("c".into()),
            user: None,
            secret: Secret::new("s"),
        };
        let b = v3_body(&app, Some(&Named::Name("demo".into())), None);
        assert!(b["auth"].get("scope").is_none(), "{b}");
        assert_eq!(b["auth"]["identity"]["application_credential"]["secret"], "s");
    }

    #[test]
    fn endpoints_by_region_and_interface() {
        let catalog = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "R1", "url": "k"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "public", "region_id": "R1", "url": "p1"},
                {"interface": "internal", "region_id": "R1", "url": "i1"},
                {"interface": "public", "region_id": "R2", "url": "p2"}
            ]}
        ]);
        let f = |region: Option<&str>, interface| EndpointFilter {
            region: region.map(str::to_string),
            interface,
        };
        assert_eq!(v3_endpoint(&catalog, &f(None, Interface::Public), "u").unwrap(), "p1");
        assert_eq!(v3_endpoint(&catalog, &f(Some("R2"), Interface::Public), "u").unwrap(), "p2");
        assert_eq!(v3_endpoint(&catalog, &f(None, Interface::Internal), "u").unwrap(), "i1");
        let err = v3_endpoint(&catalog, &f(Some("R2"), Interface::Admin), "u").unwrap_err();
        assert!(err.to_string().contains("public in R1, internal in R1, public in R2"), "{err}");
        let err = v3_endpoint(&json!([]), &f(None, Interface::Public), "u").unwrap_err();
        assert!(err.to_string().contains("no object-store service at all"), "{err}");
        let v2 = json!([{"type": "object-store", "endpoints": [
            {"region": "R1", "publicURL": "p", "internalURL": "i"}]}]);
        assert_eq!(v2_endpoint(&v2, &f(None, Interface::Internal), "u").unwrap(), "i");
    }

    #[test]
    fn interfaces_parse_as_the_clis_write_them() {
        assert_eq!(Interface::parse("publicURL").unwrap(), Interface::Public);
        assert_eq!(Interface::parse("internal").unwrap(), Interface::Internal);
        assert!(Interface::parse("private").is_err());
    }

    #[test]
    fn renewal_leaves_a_margin() {
        let now = Instant::now();
        let r = renew_after(3.0);
        assert!(r > now + Duration::from_millis(2000) && r < now + Duration::from_millis(2900));
        let r = renew_after(3600.0);
        assert!(r < now + Duration::from_secs(3600 - 59));
    }
}
