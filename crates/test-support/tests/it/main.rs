//! Integration tests of the test-support server, driven by a real HTTP
//! client (ureq, which zoo itself uses).
#![allow(clippy::unwrap_used)]

mod github;
mod hub;
mod server;

/// An agent that returns 4xx/5xx responses instead of errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}
