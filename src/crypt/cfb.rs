//! freezer-agent's encryption: `openssl enc -aes-256-cfb -pass file:K`. The stream is
//! `Salted__`, an 8-byte salt, then AES-256 in CFB-128 mode; key and IV come from OpenSSL's
//! `EVP_BytesToKey` with one iteration of SHA-256 (OpenSSL ≥ 1.1, what freezer-agent 19 writes)
//! or MD5 (OpenSSL ≤ 1.0.2). Nothing is authenticated: a wrong key shows only as garbage, so the
//! reader checks the plaintext's first bytes. We write it for hosts that must stay restorable
//! by freezer-agent.

use std::io::{self, Read, Write};

use aes::Aes256;
use cfb_mode::cipher::KeyIvInit;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::Md;
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"Salted__";

type Enc = cfb_mode::BufEncryptor<Aes256>;
type Dec = cfb_mode::BufDecryptor<Aes256>;

/// OpenSSL's `EVP_BytesToKey(md, pass, salt, count = 1)` for a 32-byte key and a 16-byte IV.
fn bytes_to_key(md: Md, pass: &[u8], salt: &[u8; 8]) -> ([u8; 32], [u8; 16]) {
    let mut out = Vec::with_capacity(48);
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < 48 {
        prev = match md {
            Md::Sha256 => Sha256::new()
                .chain_update(&prev)
                .chain_update(pass)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            Md::Md5 => Md5::new()
                .chain_update(&prev)
                .chain_update(pass)
                .chain_update(salt)
                .finalize()
                .to_vec(),
        };
        out.extend_from_slice(&prev);
    }
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&out[..32]);
    iv.copy_from_slice(&out[32..48]);
    (key, iv)
}

fn cipher<C: KeyIvInit>(md: Md, pass: &[u8], salt: &[u8; 8]) -> C {
    let (key, iv) = bytes_to_key(md, pass, salt);
    // Sizes are fixed by AES-256-CFB: 32-byte key, 16-byte IV.
    C::new_from_slices(&key, &iv).unwrap_or_else(|_| unreachable!("AES-256 key and IV sizes"))
}

/// Encrypting writer: the header goes out with the first write (or at finish).
pub struct Writer<W: Write> {
    inner: W,
    enc: Enc,
    header: Option<[u8; 16]>,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W, pass: &[u8]) -> Result<Writer<W>> {
        let mut salt = [0u8; 8];
        getrandom(&mut salt)?;
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&salt);
        Ok(Writer {
            inner,
            enc: cipher(Md::Sha256, pass, &salt),
            header: Some(header),
            buf: Vec::new(),
        })
    }

    fn write_header(&mut self) -> io::Result<()> {
        if let Some(h) = self.header.take() {
            self.inner.write_all(&h)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_header()?;
        let n = data.len().min(1 << 20);
        self.buf.clear();
        self.buf.extend_from_slice(&data[..n]);
        self.enc.encrypt(&mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::fs::File;
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::io("cannot read random bytes from /dev/urandom", e))
}

/// Decrypting reader.
pub struct Reader<R: Read> {
    inner: R,
    dec: Dec,
    /// Plaintext already decrypted while choosing the digest.
    pending: Vec<u8>,
    pos: usize,
}

impl<R: Read> Reader<R> {
    /// Read the header and the first bytes, and find the digest whose key makes `plausible`
    /// accept them (SHA-256 first); `md` forces one. A wrong passphrase is `WrongKey`.
    pub fn new(
        mut inner: R,
        pass: &[u8],
        md: Option<Md>,
        plausible: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Reader<R>> {
        let mut header = [0u8; 16];
        crate::pipe::read_full(&mut inner, &mut header)
            .and_then(|n| if n == 16 { Ok(()) } else { Err(io::ErrorKind::UnexpectedEof.into()) })
            .map_err(|e| {
                Error::corrupt("the encrypted data is shorter than its header").with_source(e)
            })?;
        if &header[..8] != MAGIC {
            return Err(Error::corrupt(
                "the data does not start with openssl's 'Salted__' header: it is not encrypted with openssl enc",
            ));
        }
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&header[8..]);
        let mut first = vec![0u8; 512];
        let n = crate::pipe::read_full(&mut inner, &mut first)
            .map_err(|e| Error::io("cannot read the encrypted data", e))?;
        first.truncate(n);
        let candidates: &[Md] = match md {
            Some(Md::Sha256) => &[Md::Sha256],
            Some(Md::Md5) => &[Md::Md5],
            None => &[Md::Sha256, Md::Md5],
        };
        for &m in candidates {
            let mut dec: Dec = cipher(m, pass, &salt);
            let mut plain = first.clone();
            dec.decrypt(&mut plain);
            if plausible(&plain) {
                return Ok(Reader { inner, dec, pending: plain, pos: 0 });
            }
        }
        Err(Error::new(
            ErrorKind::WrongKey,
            "the passphrase does not decrypt this backup (openssl aes-256-cfb, tried the SHA-256 and MD5 key derivations)",
        ))
    }
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.pos);
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        self.dec.decrypt(&mut buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cfb -md sha256 -pass pass:secret -S 0102030405060708 -P`
        let (key, iv) = bytes_to_key(Md::Sha256, b"secret", &[1, 2, 3, 4, 5, 6, 7, 8]);
        let out = std::process::Command::new("openssl")
            .args([
                "enc",
                "-aes-256-cfb",
                "-md",
                "sha256",
                "-pass",
                "pass:secret",
                "-S",
                "0102030405060708",
                "-P",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_uppercase();
        assert!(text.contains(&format!("KEY={}", hex::encode_upper(key))), "{text}");
        assert!(text.contains(&format!("IV ={}", hex::encode_upper(iv))), "{text}");
    }
}
