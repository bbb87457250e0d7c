//! Integration tests of zoo-sources against loopback servers.
#![allow(clippy::unwrap_used)]

mod extract;
mod fetch;
mod hostile_transfers;
mod properties;
mod transfer;
