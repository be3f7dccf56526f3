//! Integration tests: the real binary against real GNU tar, gzip/zstd CLIs and freezer-agent 19.

mod support;

mod agent;
mod cli;
mod crypt;
mod damage;
mod faults;
mod freezerc;
mod gnu;
mod hostile;
mod keys;
mod messages;
mod mounts;
mod ops;
mod property;
mod prune;
mod roundtrip;
mod sftp;
mod swift;
