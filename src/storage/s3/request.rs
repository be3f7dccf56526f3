//! Signed requests: `rusty-s3` signs each request as a presigned URL (SigV4 in the query, so
//! the body is not hashed and a segment is never read twice); `ureq` sends it with the
//! shared retries. S3's XML errors become messages that say what to fix.

use std::time::Duration;

use jiff::Timestamp;
use rusty_s3::{Bucket, Credentials, Method, S3Action};

use crate::error::{Error, Result};
use crate::storage::http::{Http, Reply};

/// How long a signature is valid: longer than any request with its retries.
pub(crate) const EXPIRES: Duration = Duration::from_secs(3600);

/// A bucket and the keys that sign requests to it.
pub(crate) struct Signer {
    pub http: Http,
    pub bucket: Bucket,
    pub credentials: Credentials,
}

impl Signer {
    /// Sign `action` (with `signed` headers, lower-case names) and send it with those headers
    /// plus `unsigned` ones; `what` names the request in messages.
    pub(crate) fn send<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        signed: &[(&'a str, &'a str)],
        unsigned: &[(&str, &str)],
        body: &[u8],
        what: &str,
    ) -> Result<Reply> {
        for (name, value) in signed {
            action.headers_mut().insert(*name, *value);
        }
        let url = action.sign(EXPIRES);
        let mut headers: Vec<(&str, &str)> = signed.to_vec();
        headers.extend_from_slice(unsigned);
        self.http.send(method_name(A::METHOD), url.as_str(), &headers, body, what)
    }

    /// A request rusty-s3 has no action for (`ListMultipartUploads`): `query` sorted by name.
    pub(crate) fn send_raw(
        &self,
        method: Method,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Reply> {
        let url = rusty_s3::signing::sign(
            &Timestamp::now(),
            method,
            self.bucket.base_url().clone(),
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            EXPIRES.as_secs(),
            query.iter().copied(),
            std::iter::empty(),
        );
        self.http.send(method_name(method), url.as_str(), &[], b"", what)
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Head => "HEAD",
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    }
}

/// The text of the first `<tag>…</tag>` in an XML reply (S3's replies are flat enough).
pub(crate) fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// Every `<tag>…</tag>` block's text, in order.
pub(crate) fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// XML's five entities, as S3 escapes keys in listings.
pub(crate) fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// An error for a reply that was not what `what` expected, with S3's code explained.
pub(crate) fn failure(what: &str, where_: &str, reply: &Reply) -> Error {
    let body = String::from_utf8_lossy(&reply.body);
    let code = xml_field(&body, "Code").unwrap_or("");
    let message = xml_field(&body, "Message").map(unescape).unwrap_or_default();
    let hint = match code {
        "SignatureDoesNotMatch" => {
            " (the secret key is wrong for this access key, or the --s3-region is not the \
             server's: check SECRET_KEY / AWS_SECRET_ACCESS_KEY and the region)"
        }
        "InvalidAccessKeyId" => " (the server does not know this access key)",
        "AccessDenied" => " (these credentials may not do this: check the bucket's policy)",
        "NoSuchBucket" => " (the bucket does not exist)",
        "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError" => {
            " (the region is probably wrong: set --s3-region or AWS_REGION to the bucket's)"
        }
        "RequestTimeTooSkewed" => " (this machine's clock is wrong: fix it, e.g. with NTP)",
        // A HEAD's reply has no body to say which.
        "" if reply.status == 403 => {
            " (access denied: the secret key is wrong for this access key, the server does \
             not know the key, or it may not use this bucket)"
        }
        _ => "",
    };
    let detail = match (code, message.as_str()) {
        ("", "") => String::new(),
        ("", m) => format!(": {m}"),
        (c, "") => format!(": {c}"),
        (c, m) => format!(": {c}: {m}"),
    };
    Error::storage(format!("{what} in {where_} failed with HTTP {}{detail}{hint}", reply.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers() {
        let xml = "<Error><Code>NoSuchKey</Code><Message>a &amp; b</Message></Error>";
        assert_eq!(xml_field(xml, "Code"), Some("NoSuchKey"));
        assert_eq!(unescape(xml_field(xml, "Message").unwrap()), "a & b");
        assert_eq!(xml_blocks("<U><K>1</K></U><U><K>2</K></U>", "K"), ["1", "2"]);
        assert_eq!(xml_field(xml, "Nope"), None);
    }
}
