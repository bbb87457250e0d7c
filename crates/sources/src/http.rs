//! HTTP through ureq, with errors that say what to do.
//!
//! Every request goes through [`HttpClient`], which refuses anything but an
//! absolute `http(s)` URL before touching the network, and bounds every wait
//! by one timeout: connecting, each read of the headers or the body (an idle
//! server), and, four times over, the whole header block.

use std::time::Duration;

use ureq::http::Response;

use crate::error::SourceError;

/// The connect and idle-read timeout when the caller sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// A client with zoo's user agent; timeouts are set per request.
    pub fn new() -> Self {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .user_agent(concat!("zoo/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Self {
            following: agent(10),
            manual: agent(0),
        }
    }

    /// GETs `url` with extra `headers`, following redirects when asked.
    /// `timeout` bounds connecting and every read (headers and body alike);
    /// the header block as a whole gets four times as long.
    pub(crate) fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        follow_redirects: bool,
        timeout: Duration,
    ) -> Result<Response<ureq::Body>, SourceError> {
        check_url(url)?;
        let agent = if follow_redirects {
            &self.following
        } else {
            &self.manual
        };
        let mut request = agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .config()
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_recv_response(Some(timeout.saturating_mul(4)))
            .build()
            .call()
            .map_err(|err| transport_error(url, &err, timeout))
    }
}

/// Refuses what is not an absolute `http://` or `https://` URL with a host,
/// before any request is made: such a URL can never succeed, so it is not
/// worth a retry, and blaming the network for it would mislead.
pub(crate) fn check_url(url: &str) -> Result<(), SourceError> {
    let unsupported = |reason: String| SourceError::UnsupportedUrl {
        url: url.to_owned(),
        reason,
    };
    if url.trim().is_empty() {
        return Err(unsupported("the URL is empty".to_owned()));
    }
    if url
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(unsupported(
            "it contains whitespace or control characters".to_owned(),
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(unsupported(
            "it has no scheme (a relative path or a bare name?)".to_owned(),
        ));
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(unsupported(format!(
            "the scheme `{scheme}` is not supported"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(unsupported("it has no host".to_owned()));
    }
    Ok(())
}

/// What a ureq error means for the user; timeouts name the phase and the
/// knob, URLs ureq cannot use are not blamed on the network.
pub(crate) fn transport_error(url: &str, err: &ureq::Error, timeout: Duration) -> SourceError {
    let message = match err {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({io}); check the URL and that the server is up")
        }
        ureq::Error::HostNotFound => {
            "host not found; check the URL and your network connection".to_owned()
        }
        ureq::Error::Timeout(which) => {
            let phase = match which {
                ureq::Timeout::Connect | ureq::Timeout::Resolve => "while connecting",
                ureq::Timeout::RecvBody => "while reading the body",
                _ => "while waiting for the response",
            };
            return SourceError::TimedOut {
                url: url.to_owned(),
                phase: phase.to_owned(),
                timeout,
            };
        }
        ureq::Error::BadUri(reason) => {
            return SourceError::UnsupportedUrl {
                url: url.to_owned(),
                reason: format!("it is not a valid URL ({reason})"),
            };
        }
        ureq::Error::TooManyRedirects => "too many redirects".to_owned(),
        other => format!("{other}; check your network connection and try again"),
    };
    SourceError::Transport {
        url: url.to_owned(),
        message,
    }
}

/// Whether an I/O error from a body read is ureq's timeout (the server went
/// silent for longer than the idle-read timeout).
pub(crate) fn body_timeout(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::TimedOut
        || err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_pass() {
        for url in [
            "http://example.com/a.pt",
            "HTTPS://example.com",
            "http://user@127.0.0.1:8080/x?y#z",
            "https://[::1]:9/m",
        ] {
            assert!(check_url(url).is_ok(), "{url}");
        }
        let refused = [
            ("", "empty"),
            ("   ", "empty"),
            ("file:///etc/passwd", "scheme `file`"),
            ("ftp://example.com/a.zip", "scheme `ftp`"),
            ("models/a.pt", "no scheme"),
            ("/abs/a.pt", "no scheme"),
            ("http:///a.pt", "no host"),
            ("https://:80/a", "no host"),
            ("http://a b/c", "whitespace"),
            ("http://a/\n", "whitespace"),
        ];
        for (url, needle) in refused {
            let message = check_url(url).unwrap_err().to_string();
            assert!(message.contains(needle), "{url}: {message}");
            assert!(message.contains(&format!("`{url}`")), "{url}: {message}");
            assert!(
                message.contains("only `http://` and `https://`"),
                "{message}"
            );
        }
    }
}
