//! Against the real Swift and Keystone that `scripts/services start` runs (its services.env
//! sets the `FREEZER_TEST_*` variables; `scripts/test` sources it). Without them these tests
//! fail, naming the command: a Swift test never passes without a Swift.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::storage::suite;

pub(crate) fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test services with `source \"$(scripts/services start)\"` (scripts/test does)")
    })
}

/// A container name no other test (or run) uses.
pub(crate) fn fresh_container(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("fz-{tag}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        retries: 3,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        ..Default::default()
    }
}

pub(crate) fn tempauth(container: &str) -> SwiftOptions {
    SwiftOptions {
        auth: Auth::V1 {
            url: var("FREEZER_TEST_SWIFT_AUTH_URL"),
            user: var("FREEZER_TEST_SWIFT_USER"),
            key: Secret::new(var("FREEZER_TEST_SWIFT_KEY")),
        },
        endpoint: EndpointFilter::default(),
        storage_url: None,
        transport: Transport::default(),
        retry: quick(),
        container: container.to_string(),
        concurrency: 3,
    }
}

fn keystone(container: &str, method: V3Method, project: Option<Named>) -> SwiftOptions {
    SwiftOptions {
        auth: Auth::V3 {
            url: var("FREEZER_TEST_KEYSTONE_URL"),
            method,
            project,
            project_domain: None,
        },
        ..tempauth(container)
    }
}

fn demo_password() -> V3Method {
    V3Method::Password {
        user: Named::Name(var("FREEZER_TEST_KEYSTONE_DEMO_USER")),
        user_domain: Some(Named::Name(var("FREEZER_TEST_KEYSTONE_DEMO_DOMAIN"))),
        password: Secret::new(var("FREEZER_TEST_KEYSTONE_DEMO_PASSWORD")),
    }
}

/// Removes a container's objects and the container when dropped.
struct Cleanup(SwiftStorage);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let s = &self.0.0;
        s.delete_prefix("");
        let c = s.container().to_string();
        let _ = s.client.request("DELETE", Target::Container(&c), "", &[], b"");
    }
}

fn run_suite(make: &dyn Fn(&str) -> SwiftOptions) {
    suite::run(&|| {
        // A small listing page, so the suite's "many names" crosses several pages.
        let storage = SwiftStorage::new(make(&fresh_container("suite"))).unwrap().with_page(7);
        (
            Box::new(Cleanup(storage.clone())) as Box<dyn std::any::Any>,
            Box::new(storage) as Box<dyn StorageWrite>,
        )
    });
}

#[test]
fn suite_with_tempauth() {
    run_suite(&tempauth);
}

#[test]
fn suite_with_keystone_v3_and_a_prefix() {
    run_suite(&|c| {
        keystone(
            &format!("{c}/some/prefix"),
            demo_password(),
            Some(Named::Name(var("FREEZER_TEST_KEYSTONE_DEMO_PROJECT"))),
        )
    });
}

#[test]
fn keystone_users_projects_and_domains_by_name_and_id() {
    let other_pw = || Secret::new(var("FREEZER_TEST_KEYSTONE_OTHER_PASSWORD"));
    let methods = [
        (
            V3Method::Password {
                user: Named::Id(var("FREEZER_TEST_KEYSTONE_OTHER_USER_ID")),
                user_domain: None,
                password: other_pw(),
            },
            Some(Named::Id(var("FREEZER_TEST_KEYSTONE_OTHER_PROJECT_ID"))),
            None,
        ),
        (
            V3Method::Password {
                user: Named::Name(var("FREEZER_TEST_KEYSTONE_OTHER_USER")),
                user_domain: Some(Named::Id(var("FREEZER_TEST_KEYSTONE_OTHER_DOMAIN_ID"))),
                password: other_pw(),
            },
            Some(Named::Name(var("FREEZER_TEST_KEYSTONE_OTHER_PROJECT"))),
            Some(Named::Name(var("FREEZER_TEST_KEYSTONE_OTHER_DOMAIN"))),
        ),
    ];
    for (method, project, project_domain) in methods {
        let mut opts = keystone(&fresh_container("ids"), method, project);
        if let Auth::V3 { project_domain: d, .. } = &mut opts.auth {
            *d = project_domain;
        }
        let s = SwiftStorage::new(opts).unwrap();
        let _c = Cleanup(s.clone());
        s.put("k", b"v").unwrap();
        assert_eq!(s.get("k").unwrap().unwrap(), b"v");
        assert!(
            s.describe().contains(&var("FREEZER_TEST_KEYSTONE_OTHER_PROJECT_ID")),
            "{}",
            s.describe()
        );
    }
}

#[test]
fn application_credential_and_region() {
    let method = V3Method::AppCredential {
        credential: Named::Id(var("FREEZER_TEST_KEYSTONE_APP_CRED_ID")),
        user: None,
        secret: Secret::new(var("FREEZER_TEST_KEYSTONE_APP_CRED_SECRET")),
    };
    let mut opts = keystone(&fresh_container("app"), method, None);
    opts.endpoint.region = Some(var("FREEZER_TEST_KEYSTONE_REGION2"));
    let s = SwiftStorage::new(opts).unwrap();
    let _c = Cleanup(s.clone());
    s.put("k", b"v").unwrap();
    assert_eq!(s.get("k").unwrap().unwrap(), b"v");
}

#[test]
fn auth_failures_say_what_to_fix() {
    let wrong = V3Method::Password {
        user: Named::Name(var("FREEZER_TEST_KEYSTONE_DEMO_USER")),
        user_domain: None,
        password: Secret::new("not-the-password"),
    };
    let project = || Some(Named::Name(var("FREEZER_TEST_KEYSTONE_DEMO_PROJECT")));
    let err = SwiftStorage::new(keystone("c", wrong, project())).unwrap().connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("user or password is wrong"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    let err = SwiftStorage::new(keystone(
        "c",
        demo_password(),
        Some(Named::Name("nosuchproject".into())),
    ))
    .unwrap()
    .connect()
    .unwrap_err();
    assert!(err.to_string().contains("the project 'nosuchproject' does not exist"), "{err}");

    let mut opts = keystone("c", demo_password(), project());
    opts.endpoint.region = Some("Atlantis".into());
    let err = SwiftStorage::new(opts).unwrap().connect().unwrap_err();
    assert!(
        err.to_string().contains("no object-store public endpoint in region Atlantis"),
        "{err}"
    );
    assert!(err.to_string().contains("public in RegionTwo"), "{err}");

    let mut opts = tempauth("c");
    if let Auth::V1 { key, .. } = &mut opts.auth {
        *key = Secret::new("wrong-key");
    }
    let err = SwiftStorage::new(opts).unwrap().connect().unwrap_err();
    assert!(err.to_string().contains("user or key is wrong"), "{err}");
}

#[test]
fn short_tokens_are_renewed() {
    let mut opts = tempauth(&fresh_container("short"));
    opts.auth = Auth::V1 {
        url: var("FREEZER_TEST_SWIFT_SHORT_AUTH_URL"),
        user: var("FREEZER_TEST_SWIFT_SHORT_USER"),
        key: Secret::new(var("FREEZER_TEST_SWIFT_SHORT_KEY")),
    };
    let s = SwiftStorage::new(opts).unwrap();
    let _c = Cleanup(s.clone());
    let first = s.0.client.session().unwrap().token;
    // Longer than the tokens live (3 s): each request still works.
    for i in 0..8 {
        s.put(&format!("k{i}"), b"v").unwrap();
        std::thread::sleep(Duration::from_millis(600));
    }
    assert_eq!(s.list("").unwrap().len(), 8);
    assert_ne!(s.0.client.session().unwrap().token, first, "the token was renewed");
}

#[test]
fn an_upload_of_many_segments_reads_back_in_order_via_the_manifest() {
    let s = SwiftStorage::new(tempauth(&fresh_container("dlo"))).unwrap();
    let _c = Cleanup(s.clone());
    let key = "data/tar/h_b/1/0_1/data";
    let mut up = s.create(key).unwrap();
    let parts: Vec<Vec<u8>> = (0..23u8).map(|i| vec![i; 100]).collect();
    for (i, p) in parts.iter().enumerate() {
        up.put_segment(i as u64, p.clone()).unwrap();
    }
    up.commit().unwrap();
    // The server's DLO join (what freezer-agent reads) agrees with ours.
    let url = format!("{}/{}/{}", s.0.client.storage_url().unwrap(), s.0.container(), key);
    let token = s.0.client.session().unwrap().token;
    let r =
        s.0.client.http.send("GET", &url, &[("X-Auth-Token", token.expose())], b"", "GET").unwrap();
    assert_eq!(r.body, parts.concat());
    let mut ours = Vec::new();
    s.open(key).unwrap().read_to_end(&mut ours).unwrap();
    assert_eq!(ours, parts.concat());
    let head = s.0.head(key).unwrap().unwrap();
    assert_eq!(head.manifest.unwrap(), format!("{}/data/tar/h_b/1/0_1/segments", s.0.container()));
    assert_eq!(s.list("data/tar/h_b/1/0_1").unwrap(), ["data", "segments"]);
}

#[test]
fn limits_come_from_info() {
    let s = SwiftStorage::new(tempauth(&fresh_container("info"))).unwrap();
    let limits = s.limits().unwrap();
    assert!(limits.max_segment_size.is_some_and(|m| m >= 5 << 30), "{limits:?}");
    assert!(s.0.info().bulk_delete.is_some());
}

/// A stand-in for Keystone v2.0, which no real server offers any more (removed in Keystone
/// 13, Queens): it answers `POST /v2.0/tokens` for user `old`/`oldpass` in tenant `oldtenant`
/// with a real tempauth token and the real Swift's URL in its catalog, so everything after
/// the login is real. Returns the auth URL.
fn keystone_v2_stub() -> String {
    use std::io::{BufRead, BufReader, Write};
    let real = SwiftStorage::new(tempauth("unused")).unwrap();
    let session = real.0.client.session().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v2.0", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut line, mut length) = (String::new(), 0usize);
            reader.read_line(&mut line).unwrap();
            let path_ok = line.starts_with("POST /v2.0/tokens ");
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let auth = &req["auth"];
            let good = path_ok
                && auth["passwordCredentials"]
                    == serde_json::json!({"username": "old", "password": "oldpass"})
                && auth["tenantName"] == "oldtenant";
            let reply = serde_json::json!({"access": {
                "token": {"id": session.token.expose(), "expires": "2099-01-01T00:00:00Z"},
                "serviceCatalog": [{"type": "object-store", "name": "swift", "endpoints": [
                    {"region": "RegionOne", "publicURL": session.storage_url, "internalURL": "http://127.0.0.1:9/x"}
                ]}]
            }})
            .to_string();
            let (status, text) =
                if good { ("200 OK", reply) } else { ("401 Unauthorized", "{}".into()) };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

#[test]
fn keystone_v2_against_a_stub() {
    let url = keystone_v2_stub();
    let v2 = |password: &str| SwiftOptions {
        auth: Auth::V2 {
            url: url.clone(),
            user: "old".into(),
            password: Secret::new(password),
            tenant: Some(Named::Name("oldtenant".into())),
        },
        ..tempauth(&fresh_container("v2"))
    };
    let s = SwiftStorage::new(v2("oldpass")).unwrap();
    let _c = Cleanup(s.clone());
    s.put("k", b"v2").unwrap();
    assert_eq!(s.get("k").unwrap().unwrap(), b"v2");
    let err = SwiftStorage::new(v2("wrong")).unwrap().connect().unwrap_err();
    assert!(err.to_string().contains("the user, password or tenant is wrong"), "{err}");
}
