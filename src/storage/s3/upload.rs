//! A data object as freezer-agent 19 writes it to S3: one multipart upload, part N+1 for
//! segment N, parts sent several at once (each with its Content-MD5 for the server to check),
//! completed on commit. A failed part aborts the whole upload and fails the backup; the agent
//! aborts and carries on as if it had worked.

use std::sync::Arc;

use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload, UploadPart};

use super::request::xml_field;
use super::{S3, base64_md5};
use crate::error::{Error, Result};
use crate::storage::Upload;
use crate::storage::parallel::Workers;

pub(crate) struct S3Upload {
    s3: Arc<S3>,
    /// The object's full name.
    name: String,
    upload_id: String,
    workers: Workers<String>,
    finished: bool,
}

impl S3Upload {
    pub(crate) fn start(s3: Arc<S3>, name: String) -> Result<S3Upload> {
        let create = CreateMultipartUpload::new(s3.bucket(), s3.creds(), &name);
        let what = format!("starting the upload of {name}");
        let r = s3.signer.send(create, &[], &[], b"", &what)?;
        if r.status != 200 {
            return Err(s3.fail(&what, &r));
        }
        let text = String::from_utf8_lossy(&r.body);
        let upload_id = CreateMultipartUpload::parse_response(&text)
            .map(|r| r.upload_id().to_string())
            .map_err(|e| Error::storage(format!("{what}: the reply has no upload id ({e})")))?;
        let (owner, object, id) = (Arc::clone(&s3), name.clone(), upload_id.clone());
        let put = move |index: u64, data: &[u8]| put_part(&owner, &object, &id, index, data);
        let workers = Workers::start("freezer-s3", s3.concurrency, Arc::new(put))?;
        Ok(S3Upload { s3, name, upload_id, workers, finished: false })
    }
}

/// Upload segment `index` as part `index + 1`; its ETag.
fn put_part(s3: &S3, name: &str, id: &str, index: u64, data: &[u8]) -> Result<String> {
    let number = u16::try_from(index + 1)
        .ok()
        .filter(|n| *n <= 10_000)
        .ok_or_else(|| Error::storage(format!("{name}: S3 takes at most 10,000 parts")))?;
    let part = UploadPart::new(s3.bucket(), s3.creds(), name, number, id);
    let md5 = base64_md5(data);
    let what = format!("PUT part {number} of {name}");
    let r = s3.signer.send(part, &[("content-md5", &md5)], &[], data, &what)?;
    if r.status != 200 {
        return Err(s3.fail(&what, &r));
    }
    r.header("etag")
        .map(str::to_string)
        .ok_or_else(|| Error::storage(format!("{what}: the reply has no ETag")))
}

impl Upload for S3Upload {
    fn put_segment(&mut self, index: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        if data.is_empty() {
            // An empty stream's only segment: no part (see commit).
            return Ok(data);
        }
        self.workers.send(index, data)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let parts = match self.workers.finish() {
            Ok(p) => p,
            Err(e) => {
                self.finished = true;
                if let Err(abort) = self.s3.abort_upload(&self.name, &self.upload_id) {
                    log::warn!("{abort}");
                }
                return Err(e);
            }
        };
        self.finished = true;
        if parts.is_empty() {
            // S3 completes no upload without a part: an empty stream is an empty object.
            self.s3.abort_upload(&self.name, &self.upload_id)?;
            let r = self.s3.put_object(&self.name, b"", &[])?;
            return if r.status == 200 {
                Ok(())
            } else {
                Err(self.s3.fail("storing an empty object", &r))
            };
        }
        complete(&self.s3, &self.name, &self.upload_id, &parts)
    }

    fn abort(mut self: Box<Self>) -> Result<()> {
        self.workers.join();
        self.finished = true;
        self.s3.abort_upload(&self.name, &self.upload_id)
    }
}

/// CompleteMultipartUpload; S3 may answer 200 with an error in the body.
fn complete(s3: &S3, name: &str, id: &str, parts: &[(u64, String)]) -> Result<()> {
    let etags = || parts.iter().map(|(_, etag)| etag.as_str());
    let body = CompleteMultipartUpload::new(s3.bucket(), s3.creds(), name, id, etags()).body();
    let action = CompleteMultipartUpload::new(s3.bucket(), s3.creds(), name, id, etags());
    let what = format!("completing the upload of {name}");
    let r = s3.signer.send(action, &[], &[], body.as_bytes(), &what)?;
    let text = String::from_utf8_lossy(&r.body);
    if r.status != 200 || xml_field(&text, "Code").is_some() {
        let e = s3.fail(&what, &r);
        if let Err(abort) = s3.abort_upload(name, id) {
            log::warn!("{abort}");
        }
        return Err(e);
    }
    Ok(())
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        self.workers.join();
        if !self.finished {
            log::warn!(
                "the upload of {} was neither committed nor aborted: its parts stay until \
                 `freezer prune` of that backup or a bucket lifecycle rule removes them",
                self.name
            );
        }
    }
}
