//! HTTP through ureq, with errors that say what to do.

use std::time::Duration;

use ureq::http::Response;

use crate::error::SourceError;

/// An HTTP client configured for zoo: error statuses are returned, not
/// raised, so callers can explain them.
#[derive(Debug, Clone)]
pub struct HttpClient {
    following: ureq::Agent,
    manual: ureq::Agent,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with zoo's user agent and timeouts.
    pub fn new() -> Self {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .user_agent(concat!("zoo/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(120)))
                .build()
                .into()
        };
        Self {
            following: agent(10),
            manual: agent(0),
        }
    }

    /// GETs `url` with extra `headers`, following redirects when asked.
    pub(crate) fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        follow_redirects: bool,
    ) -> Result<Response<ureq::Body>, SourceError> {
        let agent = if follow_redirects {
            &self.following
        } else {
            &self.manual
        };
        let mut request = agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.call().map_err(|err| transport_error(url, &err))
    }
}

pub(crate) fn transport_error(url: &str, err: &ureq::Error) -> SourceError {
    let message = match err {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({io}); check the URL and that the server is up")
        }
        ureq::Error::HostNotFound => {
            "host not found; check the URL and your network connection".to_owned()
        }
        ureq::Error::Timeout(which) => format!("timed out ({which:?}); try again"),
        ureq::Error::BadUri(reason) => format!("invalid URL: {reason}"),
        ureq::Error::TooManyRedirects => "too many redirects".to_owned(),
        other => format!("{other}; check your network connection and try again"),
    };
    SourceError::Transport {
        url: url.to_owned(),
        message,
    }
}

/// The hint for an error status on a plain download.
pub(crate) fn status_hint(status: u16) -> Option<String> {
    match status {
        404 | 410 => Some("check the URL".to_owned()),
        401 | 403 => Some("the server refused access to this URL".to_owned()),
        429 => Some("the server is rate limiting; try again later".to_owned()),
        500..=599 => Some("the server failed; try again later".to_owned()),
        _ => None,
    }
}
