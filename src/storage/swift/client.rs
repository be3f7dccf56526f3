//! Requests to one Swift account with a token that is kept fresh: renewed before it expires
//! and once more after a 401 (a backup running for hours outlives many tokens).

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::auth::{Auth, EndpointFilter, Secret, Session};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::http::{Http, Reply};

/// What a request is addressed to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// The account (bulk delete).
    Account,
    /// A container (listing, creating).
    Container(&'a str),
    /// An object, by its container and its full name in it.
    Object(&'a str, &'a str),
}

pub(crate) struct Client {
    pub http: Http,
    auth: Auth,
    filter: EndpointFilter,
    storage_url: Option<String>,
    session: Mutex<Option<Session>>,
    /// The container's name.
    pub container: String,
}

impl Client {
    pub(crate) fn new(
        http: Http,
        auth: Auth,
        filter: EndpointFilter,
        storage_url: Option<String>,
        container: String,
    ) -> Client {
        Client { http, auth, filter, storage_url, session: Mutex::new(None), container }
    }

    /// The current session, logging in first when there is none or it is about to expire.
    pub(crate) fn session(&self) -> Result<Session> {
        let mut slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slot.as_ref()
            && s.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(s.clone());
        }
        if slot.is_some() {
            log::debug!("renewing the Swift token from {}", self.auth.url());
        }
        let fresh = self.auth.login(&self.http, &self.filter, self.storage_url.as_deref())?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The token `used` was refused: drop it unless another thread already replaced it.
    fn invalidate(&self, used: &Secret) {
        let mut slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|s| &s.token == used) {
            *slot = None;
        }
    }

    /// The account's storage URL.
    pub(crate) fn storage_url(&self) -> Result<String> {
        Ok(self.session()?.storage_url)
    }

    /// Send a request with the token; a 401 gets one new token and one more try.
    pub(crate) fn request(
        &self,
        method: &str,
        target: Target<'_>,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply> {
        let what = match target {
            Target::Account => format!("{method} (account){}", query_part(query)),
            Target::Container(c) => format!("{method} {c}{}", query_part(query)),
            Target::Object(c, name) => format!("{method} {c}/{name}"),
        };
        let mut renewed = false;
        loop {
            let session = self.session()?;
            let url = self.url(&session.storage_url, target, query);
            let mut all: Vec<(&str, &str)> = vec![("X-Auth-Token", session.token.expose())];
            all.extend_from_slice(headers);
            let reply = self.http.send(method, &url, &all, body, &what).map_err(|e| {
                e.context(format!("swift container {} at {}", self.container, session.storage_url))
            })?;
            if reply.status == 401 && !renewed {
                log::debug!("{what}: 401, getting a new token");
                self.invalidate(&session.token);
                renewed = true;
                continue;
            }
            if reply.status == 401 || reply.status == 403 {
                return Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "{what}: Swift refused access (HTTP {}) even with a new token; check \
                         that the user may write to container '{}' of {}",
                        reply.status, self.container, session.storage_url
                    ),
                ));
            }
            return Ok(reply);
        }
    }

    fn url(&self, storage_url: &str, target: Target<'_>, query: &str) -> String {
        let base = storage_url.trim_end_matches('/');
        let path = match target {
            Target::Account => base.to_string(),
            Target::Container(c) => format!("{base}/{}", encode(c)),
            Target::Object(c, name) => format!("{base}/{}/{}", encode(c), encode(name)),
        };
        format!("{path}{}", query_part(query))
    }
}

fn query_part(query: &str) -> String {
    if query.is_empty() { String::new() } else { format!("?{query}") }
}

/// Percent-encode a path, leaving `/` and RFC 3986's unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encode a query value (`/` too).
pub(crate) fn encode_query(s: &str) -> String {
    encode(s).replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded() {
        assert_eq!(encode("data/tar/h_b/1/0_1/data"), "data/tar/h_b/1/0_1/data");
        assert_eq!(encode("a b/é?#"), "a%20b/%C3%A9%3F%23");
        assert_eq!(encode_query("metadata/tar/"), "metadata%2Ftar%2F");
    }
}
