//! Integration tests: the real binary against real GNU tar, gzip/zstd CLIs and freezer-agent 19.

mod support;

mod agent;
mod btrfs;
mod cli;
mod crypt;
mod damage;
mod faults;
mod freezerc;
mod ftp;
mod gnu;
mod hooks;
mod hostile;
mod keys;
mod lvm;
mod messages;
mod mongo;
mod mounts;
mod multi;
mod mysql;
mod ops;
mod property;
mod prune;
mod roundtrip;
mod s3;
mod sftp;
mod swift;
