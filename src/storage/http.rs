//! HTTP on `ureq` (rustls + ring) for the object stores (Swift, S3): one request at a time
//! per call, whole replies, and the retries: exponential backoff with full jitter on connection failures, stalls (no byte for
//! `stall` seconds), 408, 429 and 5xx, honouring `Retry-After`; capped, then a loud error.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::error::{Error, Result};

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// The first backoff; each next one doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No byte sent or received for this long: the request is abandoned and retried.
    pub stall: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries from 0.5 s, at most 20 s apart (about a minute of trying); 60 s stalls.
    fn default() -> Self {
        RetryPolicy {
            retries: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            stall: Duration::from_secs(60),
        }
    }
}

/// TLS and proxy settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// Do not check certificates (`--insecure`, `OS_INSECURE`).
    pub insecure: bool,
    /// Trust only the CAs in this PEM file (`OS_CACERT`), instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `Some("")`: no proxy; `Some(url)`: this one; `None`: `HTTPS_PROXY` and friends.
    pub proxy: Option<String>,
}

/// A whole reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (names are case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `from` names the server in the error.
    pub(crate) fn json(&self, from: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::storage(format!("{from} answered with something that is not JSON: {e}"))
        })
    }
}

/// Whether a status is worth another try.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 498) || (500..600).contains(&status) && status != 501
}

/// The HTTP agent and how to retry.
pub(crate) struct Http {
    agent: ureq::Agent,
    pub retry: RetryPolicy,
}

impl Http {
    pub(crate) fn new(
        transport: &Transport,
        retry: RetryPolicy,
        connections: usize,
    ) -> Result<Http> {
        let roots = match &transport.ca_file {
            Some(path) => RootCerts::new_with_certs(&read_pem(path)?),
            None => RootCerts::PlatformVerifier,
        };
        let tls =
            TlsConfig::builder().root_certs(roots).disable_verification(transport.insecure).build();
        let proxy = match transport.proxy.as_deref() {
            Some("") => None,
            Some(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                Error::usage(format!("invalid --proxy '{url}': {e}; give http://HOST:PORT"))
            })?),
            None => ureq::Proxy::try_from_env(),
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .proxy(proxy)
            .user_agent(format!("freezer/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(retry.stall))
            .timeout_per_write(Some(retry.stall))
            .max_idle_connections(connections.max(4) * 2)
            .max_idle_connections_per_host(connections.max(4) * 2)
            .max_idle_age(Duration::from_secs(30))
            .build();
        Ok(Http { agent: config.new_agent(), retry })
    }

    /// One request to an auth service: retried like any other, never with a token.
    pub(crate) fn auth_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        self.send(method, url, headers, body.unwrap_or_default(), &format!("{method} {url}"))
    }

    /// Send, retrying what is transient; `what` names the request in messages (never a
    /// secret: headers are not part of it).
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        what: &str,
    ) -> Result<Reply> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            crate::interrupt::check()?;
            let (failure, wait) = match self.once(method, url, headers, body) {
                Ok(r) if transient(r.status) => {
                    let after = r.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                    (format!("HTTP {}", r.status), after.map(Duration::from_secs))
                }
                Ok(r) => return Ok(r),
                Err(e) => (e, None),
            };
            if attempt >= self.retry.retries {
                return Err(Error::storage(format!(
                    "{what} failed after {} attempts in {:.0} s: {failure}",
                    attempt + 1,
                    started.elapsed().as_secs_f64()
                )));
            }
            let delay = wait.unwrap_or_else(|| self.backoff(attempt)).min(self.retry.max_delay);
            log::warn!("{what}: {failure}; trying again in {:.1} s", delay.as_secs_f64());
            sleep(delay)?;
            attempt += 1;
        }
    }

    /// Full jitter: a random delay up to `base * 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling =
            self.retry.base_delay.saturating_mul(1 << attempt.min(16)).min(self.retry.max_delay);
        ceiling.mul_f64(0.5 + 0.5 * random_fraction())
    }

    /// One attempt; an error is the text of a transport failure (connection, stall).
    fn once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Reply, String> {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body).map_err(|e| format!("invalid request: {e}"))?;
        let mut resp = self.agent.run(req).map_err(describe)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect();
        let mut data = Vec::new();
        if method != "HEAD" {
            resp.body_mut()
                .with_config()
                .limit(u64::MAX)
                .reader()
                .read_to_end(&mut data)
                .map_err(|e| format!("reading the reply failed: {e}"))?;
        }
        Ok(Reply { status, headers, body: data })
    }
}

fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

/// Sleep in slices, so SIGTERM stops a waiting run promptly.
fn sleep(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        crate::interrupt::check()?;
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A number in [0, 1) that differs between calls and processes (jitter, not cryptography).
fn random_fraction() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ seed
        ^ u64::from(std::process::id());
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn read_pem(path: &std::path::Path) -> Result<Vec<Certificate<'static>>> {
    let text = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read the CA file {}", path.display()), e))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&text) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::usage(format!(
                    "the CA file {} is not PEM: {e}",
                    path.display()
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::usage(format!("the CA file {} holds no certificate", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient(s), "{s}");
        }
        for s in [200, 201, 204, 400, 401, 403, 404, 409, 412, 422, 501] {
            assert!(!transient(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let http = Http::new(&Transport::default(), RetryPolicy::default(), 4).unwrap();
        for attempt in 0..10 {
            let d = http.backoff(attempt);
            let ceiling =
                (Duration::from_millis(500) * (1 << attempt)).min(Duration::from_secs(20));
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn a_refused_connection_fails_after_the_retries() {
        let retry =
            RetryPolicy { retries: 2, base_delay: Duration::from_millis(10), ..Default::default() };
        let http = Http::new(&Transport::default(), retry, 1).unwrap();
        // Port 9 (discard) on loopback: nothing listens there.
        let err = http.send("GET", "http://127.0.0.1:9/x", &[], b"", "GET x").unwrap_err();
        assert!(err.to_string().contains("GET x failed after 3 attempts"), "{err}");
    }
}
