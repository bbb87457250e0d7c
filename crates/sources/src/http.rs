//! HTTP through ureq, with errors that say what to do.
//!
//! Every request goes through [`HttpClient`], which refuses anything but an
//! absolute `http(s)` URL before touching the network, and bounds every wait
//! by one timeout: connecting, the whole header block, and each read of the
//! body (an idle server).

use std::time::Duration;

use ureq::http::Response;

use crate::error::SourceError;

/// The connect, header and idle-read timeout when the caller sets none: 10
/// seconds, as Hugging Face's client waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many redirects one request follows.
const MAX_REDIRECTS: usize = 10;

/// An HTTP client configured for zoo: error statuses are returned, not
/// raised, so callers can explain them; redirects are followed here, hop by
/// hop, so every `Location` passes the same URL check as the first URL.
#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with zoo's user agent; timeouts are set per request.
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("zoo/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent }
    }

    /// GETs `url` with extra `headers`, following redirects when asked.
    /// `timeout` bounds connecting, the header block as a whole, and every
    /// read of the body.
    pub(crate) fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        follow_redirects: bool,
        timeout: Duration,
    ) -> Result<Response<ureq::Body>, SourceError> {
        check_url(url)?;
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get_once(&current, headers, timeout)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok());
            let (true, true, Some(location)) = (
                follow_redirects,
                matches!(status, 301 | 302 | 303 | 307 | 308),
                location,
            ) else {
                return Ok(response);
            };
            let next = resolve_location(&current, location);
            check_url(&next).map_err(|err| match err {
                SourceError::UnsupportedUrl { url, reason } => SourceError::UnsupportedUrl {
                    url,
                    reason: format!("{reason} (`{current}` redirected there)"),
                },
                other => other,
            })?;
            tracing::debug!(from = %current, to = %next, status, "following redirect");
            current = next;
        }
        Err(SourceError::Transport {
            url: url.to_owned(),
            message: format!("more than {MAX_REDIRECTS} redirects (a redirect loop?)"),
        })
    }

    fn get_once(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Response<ureq::Body>, SourceError> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .config()
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .build()
            .call()
            .map_err(|err| transport_error(url, &err, timeout))
    }
}

/// The URL a `Location` header names, resolved against the URL that sent it
/// (RFC 3986 section 5.2, the cases servers send: absolute, `//host/...`,
/// `/path`, and a path relative to the current folder).
pub(crate) fn resolve_location(base: &str, location: &str) -> String {
    let location = location.trim();
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|character: char| character.is_ascii_alphabetic())
            && scheme.chars().all(|character| {
                character.is_ascii_alphanumeric() || matches!(character, '+' | '-' | '.')
            })
    });
    if has_scheme {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(network_path) = location.strip_prefix("//") {
        return format!("{scheme}://{network_path}");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let folder = path.rfind('/').map_or("/", |end| &path[..=end]);
    format!("{scheme}://{authority}{folder}{location}")
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
                _ => "while waiting for the response headers",
            };
            return SourceError::TimedOut {
                url: url.to_owned(),
                phase: phase.to_owned(),
                timeout,
                attempts: 1,
                waited: timeout,
            };
        }
        ureq::Error::BadUri(reason) => {
            return SourceError::UnsupportedUrl {
                url: url.to_owned(),
                reason: format!("it is not a valid URL ({reason})"),
            };
        }
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
    fn locations_resolve_against_the_url_that_sent_them() {
        let base = "https://a.example:8/x/y/file.pt?q=1";
        let cases = [
            ("https://b.example/z", "https://b.example/z"),
            ("file:///etc/passwd", "file:///etc/passwd"),
            ("FTP://b/c", "FTP://b/c"),
            ("//c.example/d", "https://c.example/d"),
            ("/root.pt", "https://a.example:8/root.pt"),
            ("other.pt", "https://a.example:8/x/y/other.pt"),
            ("../up.pt?x", "https://a.example:8/x/y/../up.pt?x"),
            (" /t ", "https://a.example:8/t"),
        ];
        for (location, expected) in cases {
            assert_eq!(resolve_location(base, location), expected, "{location}");
        }
        assert_eq!(
            resolve_location("http://h", "p"),
            "http://h/p",
            "a base without a path"
        );
    }

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
