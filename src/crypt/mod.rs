//! The encryption stage, between compression and segmenting.
//!
//! - `age` (default): authenticated, streaming, standard — the `age` CLI decrypts it. A
//!   passphrase (scrypt) from a pass file, or X25519 recipients so that a backup host can encrypt
//!   without being able to decrypt. Any change to the data is detected.
//! - `openssl-aes-256-cfb`: freezer-agent's format ([`cfb`]), not authenticated; for fleets that
//!   must stay restorable by freezer-agent.
//!
//! Secrets never reach messages, logs or `Debug` output.

pub mod cfb;

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, ErrorKind, Result};

/// scrypt work factor for passphrases: 2^14 (16 MiB, about 0.05 s here), scrypt's classic
/// interactive setting. age's own default aims at 1 s; a backup derives twice (data and
/// snapshot) and a restore once per object, so that would add seconds to every run, and pass
/// files are expected to hold long random keys, not words a person chose.
const SCRYPT_LOG_N: u8 = 14;

/// How a backup is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Age,
    OpensslAes256Cfb,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Age => "age",
            Format::OpensslAes256Cfb => "openssl-aes-256-cfb",
        }
    }

    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "age" => Ok(Format::Age),
            "openssl-aes-256-cfb" | "openssl" => Ok(Format::OpensslAes256Cfb),
            other => Err(Error::usage(format!(
                "unknown encryption format '{other}': use age or openssl-aes-256-cfb"
            ))),
        }
    }
}

/// The digest of openssl's key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Md {
    Sha256,
    Md5,
}

impl FromStr for Md {
    type Err = Error;
    fn from_str(s: &str) -> Result<Md> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Md::Sha256),
            "md5" => Ok(Md::Md5),
            other => {
                Err(Error::usage(format!("unknown --openssl-md '{other}': use sha256 or md5")))
            }
        }
    }
}

/// A passphrase read from a file; its `Debug` shows only where it came from.
#[derive(Clone)]
pub struct Passphrase {
    secret: SecretString,
    source: PathBuf,
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Passphrase(from {})", self.source.display())
    }
}

/// What a backup encrypts to.
#[derive(Debug)]
pub enum EncryptKey {
    Passphrase(Passphrase),
    Recipients(Vec<age::x25519::Recipient>),
}

/// What a restore decrypts with.
pub enum DecryptKey {
    Passphrase(Passphrase),
    Identities { ids: Vec<age::x25519::Identity>, source: PathBuf },
}

impl fmt::Debug for DecryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptKey::Passphrase(p) => p.fmt(f),
            DecryptKey::Identities { ids, source } => {
                write!(f, "Identities({} from {})", ids.len(), source.display())
            }
        }
    }
}

/// The first line of `path`, newline stripped, as `openssl -pass file:` reads it. Warns when
/// the file is readable by group or others.
pub fn read_pass_file(path: &Path) -> Result<Passphrase> {
    let data = std::fs::read(path).map_err(|e| {
        Error::usage(format!("cannot read --encrypt-pass-file {}: {e}", path.display()))
    })?;
    warn_if_readable(path);
    // Exactly what `openssl -pass file:` takes: the first line without its '\n' (a '\r' stays),
    // at most 1023 bytes; openssl would silently cut longer or NUL-containing lines.
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() > 1023 || line.contains(&0) {
        return Err(Error::usage(format!(
            "the passphrase in {} is longer than 1023 bytes or contains a NUL byte; openssl could not read it back",
            path.display()
        )));
    }
    if line.is_empty() {
        return Err(Error::usage(format!(
            "the pass file {} is empty: its first line is the passphrase",
            path.display()
        )));
    }
    let text = String::from_utf8(line.to_vec()).map_err(|_| {
        Error::usage(format!("the passphrase in {} is not valid UTF-8", path.display()))
    })?;
    Ok(Passphrase { secret: SecretString::from(text), source: path.to_path_buf() })
}

fn warn_if_readable(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        log::warn!(
            "{} can be read by other users; protect it with: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

/// `AGE-SECRET-KEY-1…` lines of an identity file (as `age-keygen` writes it; `#` comments).
pub fn read_identity_file(path: &Path) -> Result<DecryptKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!("cannot read --encrypt-identity-file {}: {e}", path.display()))
    })?;
    warn_if_readable(path);
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = age::x25519::Identity::from_str(line).map_err(|_| {
            Error::usage(format!(
                "line {} of the identity file {} is not an age identity (AGE-SECRET-KEY-1…)",
                n + 1,
                path.display()
            ))
        })?;
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(Error::usage(format!("no age identity in {}", path.display())));
    }
    Ok(DecryptKey::Identities { ids, source: path.to_path_buf() })
}

/// `age1…` recipients.
pub fn parse_recipients(list: &[String]) -> Result<EncryptKey> {
    let mut out = Vec::new();
    for r in list {
        out.push(age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
            Error::usage(format!("invalid --encrypt-recipient '{r}': {e}; expected age1…"))
        })?);
    }
    Ok(EncryptKey::Recipients(out))
}

/// The encrypting stage (or a pass-through, so the pipeline has one shape).
pub enum Encryptor<W: Write> {
    Plain(W),
    Age(Box<age::stream::StreamWriter<W>>),
    Cfb(Box<cfb::Writer<W>>),
}

/// What a backup's data is encrypted with.
#[derive(Debug, Clone)]
pub struct Encryption {
    pub format: Format,
    pub key: std::sync::Arc<EncryptKey>,
}

/// Encrypt into `inner` when `enc` is given, else pass through.
pub fn stage<W: Write>(enc: Option<&Encryption>, inner: W) -> Result<Encryptor<W>> {
    match enc {
        Some(e) => encryptor(e.format, &e.key, inner),
        None => Ok(Encryptor::Plain(inner)),
    }
}

/// Start encrypting into `inner`.
pub fn encryptor<W: Write>(format: Format, key: &EncryptKey, inner: W) -> Result<Encryptor<W>> {
    match (format, key) {
        (Format::Age, EncryptKey::Passphrase(p)) => {
            let mut r = age::scrypt::Recipient::new(p.secret.clone());
            r.set_work_factor(SCRYPT_LOG_N);
            age_writer(std::iter::once(&r as &dyn age::Recipient), inner)
        }
        (Format::Age, EncryptKey::Recipients(rs)) => {
            age_writer(rs.iter().map(|r| r as &dyn age::Recipient), inner)
        }
        (Format::OpensslAes256Cfb, EncryptKey::Passphrase(p)) => Ok(Encryptor::Cfb(Box::new(
            cfb::Writer::new(inner, p.secret.expose_secret().as_bytes())?,
        ))),
        (Format::OpensslAes256Cfb, EncryptKey::Recipients(_)) => Err(Error::usage(
            "openssl-aes-256-cfb needs --encrypt-pass-file; recipients are an age feature",
        )),
    }
}

fn age_writer<'a, W: Write>(
    recipients: impl Iterator<Item = &'a dyn age::Recipient>,
    inner: W,
) -> Result<Encryptor<W>> {
    let enc = age::Encryptor::with_recipients(recipients)
        .map_err(|e| Error::usage(format!("cannot encrypt to these recipients: {e}")))?;
    let w = enc.wrap_output(inner).map_err(|e| Error::io("cannot start encrypting", e))?;
    Ok(Encryptor::Age(Box::new(w)))
}

impl<W: Write> Encryptor<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encryptor::Plain(w) => Ok(w),
            Encryptor::Age(w) => w.finish(),
            Encryptor::Cfb(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encryptor::Plain(w) => w.write(buf),
            Encryptor::Age(w) => w.write(buf),
            Encryptor::Cfb(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encryptor::Plain(w) => w.flush(),
            Encryptor::Age(w) => w.flush(),
            Encryptor::Cfb(w) => w.flush(),
        }
    }
}

/// A decrypting reader. `plausible` judges the first plaintext bytes (the compression's magic):
/// it picks openssl's digest and detects a wrong passphrase before anything is restored.
pub fn decryptor<'a, R: Read + Send + 'a>(
    format: Format,
    key: &DecryptKey,
    inner: R,
    md: Option<Md>,
    plausible: &dyn Fn(&[u8]) -> bool,
) -> Result<Box<dyn Read + Send + 'a>> {
    match (format, key) {
        (Format::OpensslAes256Cfb, DecryptKey::Passphrase(p)) => {
            let r = cfb::Reader::new(inner, p.secret.expose_secret().as_bytes(), md, plausible)
                .map_err(|e| match e.kind() {
                    ErrorKind::WrongKey => Error::new(
                        ErrorKind::WrongKey,
                        format!(
                            "the passphrase in {} does not decrypt this backup",
                            p.source.display()
                        ),
                    ),
                    _ => e,
                })?;
            Ok(Box::new(r))
        }
        (Format::OpensslAes256Cfb, DecryptKey::Identities { .. }) => Err(Error::usage(
            "this backup is encrypted with openssl aes-256-cfb: give --encrypt-pass-file",
        )),
        (Format::Age, key) => {
            let dec = age::Decryptor::new(inner).map_err(age_header_error)?;
            let reader = match key {
                DecryptKey::Passphrase(p) => {
                    let mut id = age::scrypt::Identity::new(p.secret.clone());
                    id.set_max_work_factor(22);
                    dec.decrypt(std::iter::once(&id as &dyn age::Identity)).map_err(|e| {
                        wrong_key(e, &format!("the passphrase in {}", p.source.display()))
                    })?
                }
                DecryptKey::Identities { ids, source } => {
                    dec.decrypt(ids.iter().map(|i| i as &dyn age::Identity)).map_err(|e| {
                        wrong_key(e, &format!("the identities in {}", source.display()))
                    })?
                }
            };
            Ok(Box::new(AgeReader(reader)))
        }
    }
}

fn age_header_error(e: age::DecryptError) -> Error {
    Error::corrupt(format!("the data is not a valid age file: {e}"))
}

fn wrong_key(e: age::DecryptError, what: &str) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => Error::new(
            ErrorKind::WrongKey,
            format!("{what} cannot decrypt this backup (wrong passphrase or identity)"),
        ),
        other => Error::corrupt(format!("the encrypted data is damaged: {other}")),
    }
}

/// age's payload errors (a changed, missing or reordered chunk) become `Corrupt`.
struct AgeReader<R>(R);

impl<R: Read> Read for AgeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::from(Error::corrupt(format!(
                    "the encrypted data is damaged or truncated (age authentication failed: {e})"
                )))
            } else {
                e
            }
        })
    }
}

/// Encrypt a small object whole.
pub fn encrypt_bytes(format: Format, key: &EncryptKey, data: &[u8]) -> Result<Vec<u8>> {
    let mut w = encryptor(format, key, Vec::new())?;
    w.write_all(data).map_err(|e| Error::io("cannot encrypt", e))?;
    w.finish().map_err(|e| Error::io("cannot encrypt", e))
}

/// Decrypt a small object whole.
pub fn decrypt_bytes(
    format: Format,
    key: &DecryptKey,
    data: &[u8],
    md: Option<Md>,
    plausible: &dyn Fn(&[u8]) -> bool,
) -> Result<Vec<u8>> {
    let mut r = decryptor(format, key, data, md, plausible)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(Error::from)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
