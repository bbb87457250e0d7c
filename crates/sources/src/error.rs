//! Errors fetching and unpacking sources.

/// Why a source could not be parsed, fetched or unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The identifier is not one of the four accepted forms.
    #[error("`{input}` is not a source identifier: {reason}")]
    InvalidIdentifier {
        /// What the user gave.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or the transfer broke.
    #[error("request to `{url}` failed: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong, and what to try.
        message: String,
    },
    /// The server answered with an error status.
    #[error("`{url}` answered HTTP {status}{}{}", detail.as_deref().map(|detail| format!(" ({detail})")).unwrap_or_default(), hint.as_deref().map(|hint| format!(": {hint}")).unwrap_or_default())]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's own message, when it gave one.
        detail: Option<String>,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// A GitHub repo, ref or path does not exist (or is private).
    #[error("{what} not found{}", hint.as_deref().map(|hint| format!(": {hint}")).unwrap_or_default())]
    NotFound {
        /// What was looked for.
        what: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// GitHub's API rate limit is exhausted.
    #[error("GitHub API rate limit exceeded at `{url}`: {hint}")]
    RateLimited {
        /// The URL requested.
        url: String,
        /// What the user can do about it.
        hint: String,
    },
    /// GitHub refused the token.
    #[error(
        "GitHub rejected the token at `{url}` (bad credentials): check or unset `GITHUB_TOKEN`"
    )]
    BadCredentials {
        /// The URL requested.
        url: String,
    },
    /// The URL is not one zoo can download from; nothing was requested.
    #[error(
        "cannot download `{url}`: {reason}; only `http://` and `https://` URLs are supported (check the manifest's `url`, the source identifier or `ZOO_DOWNLOAD_MIRRORS`)"
    )]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server went silent (while connecting, before the headers, or
    /// while sending the body) for longer than the timeout.
    #[error(
        "`{url}` timed out {phase}: no data for {timeout:?} ({}); the server stalled or the network is down: try again later, or raise `ZOO_HTTP_TIMEOUT` (seconds, default 10; a download is given up once it has had no data for {} times that, retries included) for a slow server",
        if *attempts == 1 { "1 attempt".to_owned() } else { format!("{attempts} attempts, {}s without data in all", waited.as_secs()) },
        crate::patience::PATIENCE_TIMEOUTS
    )]
    TimedOut {
        /// The URL requested.
        url: String,
        /// What zoo was waiting for: connecting, the response headers or
        /// the body.
        phase: String,
        /// The connect, header and idle-read timeout in force.
        timeout: std::time::Duration,
        /// Attempts made, the first included.
        attempts: u32,
        /// How long the attempts went without receiving data, in all.
        waited: std::time::Duration,
    },
    /// A `206 Partial Content` answer does not continue the partial file:
    /// its `Content-Range` is missing, malformed, or starts or ends
    /// elsewhere. The partial file was discarded.
    #[error(
        "`{url}` answered a request for bytes {requested}- with {}: {reason}; the partial download was discarded so the next attempt starts from byte 0",
        content_range.as_deref().map_or_else(|| "no `Content-Range`".to_owned(), |range| format!("`Content-Range: {range}`"))
    )]
    BadContentRange {
        /// The URL requested.
        url: String,
        /// The first byte asked for.
        requested: u64,
        /// The `Content-Range` header, if there was one.
        content_range: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A body is longer than its `Content-Length` or the declared size: the
    /// transfer was stopped there (or before the first byte, when the server
    /// announced it) and the partial file removed.
    #[error(
        "download from `{url}` failed verification: {}; the partial file was removed (the server or the manifest is wrong)",
        if *announced {
            format!("the server announced {seen} bytes, more than {limit} ({limit_source})")
        } else {
            format!("it went past {limit} bytes ({limit_source}): stopped at {seen} bytes")
        }
    )]
    Oversized {
        /// The URL requested.
        url: String,
        /// The most bytes the file may have.
        limit: u64,
        /// Where the limit comes from (the header or the manifest).
        limit_source: String,
        /// Bytes of the file seen (or announced) when it was stopped.
        seen: u64,
        /// Whether `seen` is what the server announced before sending.
        announced: bool,
    },
    /// A response body did not match what the server announced.
    #[error("download from `{url}` was cut short: got {received} of {expected} bytes; try again")]
    Truncated {
        /// The URL requested.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced by `Content-Length`.
        expected: u64,
    },
    /// A downloaded file is not what the manifest promises.
    #[error(
        "download from `{url}` failed verification: {message}; the file was discarded (the manifest or the server is wrong)"
    )]
    Verification {
        /// The URL downloaded.
        url: String,
        /// What did not match.
        message: String,
    },
    /// The file is not an archive zoo can open.
    #[error(
        "`{origin}` is not a zip, tar or tar.gz archive (judged by its name and its first bytes)"
    )]
    UnknownArchive {
        /// The URL or path of the file.
        origin: String,
    },
    /// The archive is damaged or hostile.
    #[error("refusing archive `{archive}`: entry `{entry}` {reason}")]
    UnsafeEntry {
        /// The archive.
        archive: String,
        /// The offending entry, as named in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive unpacks to more than the limits allow.
    #[error(
        "refusing archive `{archive}`: {reason} (a decompression bomb or an unexpectedly large source)"
    )]
    TooLarge {
        /// The archive.
        archive: String,
        /// Which limit was hit.
        reason: String,
    },
    /// The archive could not be read.
    #[error("archive `{archive}` is corrupt: {message}")]
    Corrupt {
        /// The archive.
        archive: String,
        /// The decoder's message.
        message: String,
    },
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
