//! Robust file downloads: resume, retry, verify, then rename into place.
//!
//! Bytes go to a hidden `.<name>.partial` file beside the destination. An
//! interrupted transfer (a dropped connection, a killed process) leaves that
//! file, and the next attempt asks the server for the rest with `Range`.
//! A `206` answer is used only when its `Content-Range` continues the partial
//! file exactly (it starts at the byte asked for, runs to the end of the
//! file, and agrees with `Content-Length` and the declared size); a server
//! that ignores the range (`200`) is read from byte 0 into an emptied file,
//! and one that garbles it has the partial file discarded and the transfer
//! started over, so a wrong file is never stitched together.
//!
//! A body is stopped as soon as it goes past its `Content-Length` or the
//! declared size (a `Content-Length` above the declared size is refused
//! before any byte is read); the partial file is then removed. Every wait is
//! bounded by [`TransferOptions::timeout`] (connecting, and each read: a
//! server that stalls fails after it). Only `http(s)` URLs are fetched; any
//! other is refused before a request, without retries.
//!
//! Connect errors, timeouts, cut bodies, 5xx answers and 429 (honouring
//! `Retry-After`) are retried with backoff, a bounded number of times, and
//! only while the download has gone less than [`PATIENCE_TIMEOUTS`] times
//! the timeout without receiving a byte ([`TransferOptions::patience`]): a
//! stalled server fails in about a minute with the default timeout, not
//! after every retry has waited its fill. The
//! finished file is checked against the expected size and sha256 when given,
//! synced, and renamed onto the destination, so the destination either does
//! not exist or is complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ureq::http::Response;

use crate::error::SourceError;
use crate::http::{DEFAULT_TIMEOUT, HttpClient, body_timeout, check_url, status_hint};
pub use crate::patience::PATIENCE_TIMEOUTS;
use crate::progress::Progress;

/// Where the limit named in [`SourceError::Oversized`] comes from.
const FROM_CONTENT_LENGTH: &str = "its `Content-Length`";
const FROM_DECLARED_SIZE: &str = "the declared `size_bytes`";
const FROM_MAX_BYTES: &str = "the download ceiling, `ZOO_MAX_DOWNLOAD_BYTES`";

/// The most bytes one download may have when nothing tighter is known
/// (no `Content-Length`, no declared size): 256 GiB, above any model file
/// published, below a disk filled by a body that never ends.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 256 << 30;

/// How a file download is checked, bounded and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    /// The expected sha256, hex (checked before the file is accepted).
    pub sha256: Option<String>,
    /// A prefix the file's hex sha256 must start with (torch hub's file
    /// names carry one: `resnet50-11ad3fa6.pth`), checked like `sha256`.
    pub sha256_prefix: Option<String>,
    /// The expected size in bytes: checked before the file is accepted, and
    /// a body that goes past it is stopped there.
    pub size: Option<u64>,
    /// Attempts after the first.
    pub retries: u32,
    /// The first backoff pause; it doubles per attempt, up to 8 seconds.
    pub backoff: Duration,
    /// How long to wait to connect, and for each read of an answer (headers
    /// or body) before the server counts as stalled (default
    /// [`crate::DEFAULT_TIMEOUT`]; the CLI reads `ZOO_HTTP_TIMEOUT`).
    pub timeout: Duration,
    /// The most bytes any download may have, whatever the server says
    /// (default [`DEFAULT_MAX_DOWNLOAD_BYTES`]; the CLI reads
    /// `ZOO_MAX_DOWNLOAD_BYTES`): a body with no length and no declared size
    /// is stopped there instead of filling the disk.
    pub max_bytes: u64,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            sha256: None,
            sha256_prefix: None,
            size: None,
            retries: 5,
            backoff: Duration::from_millis(250),
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
        }
    }
}

impl TransferOptions {
    /// How long a download may go without receiving a byte, across its
    /// retries and their pauses, before it is given up: [`PATIENCE_TIMEOUTS`]
    /// times [`TransferOptions::timeout`]. An attempt started within it may
    /// still wait to connect and for the headers, so the longest a stalled
    /// server holds zoo is [`TransferOptions::longest_stall`].
    pub fn patience(&self) -> Duration {
        self.timeout.saturating_mul(PATIENCE_TIMEOUTS)
    }

    /// The longest a download that receives nothing can last: the patience,
    /// then one more attempt's connect and header waits.
    pub fn longest_stall(&self) -> Duration {
        self.patience()
            .saturating_add(self.timeout.saturating_mul(2))
    }
}

/// The partial file a download of `dest` writes to.
pub fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

enum Attempt {
    Done,
    Retry {
        pause: Option<Duration>,
        error: SourceError,
    },
}

/// Downloads `url` to `dest` (see the module docs); returns the file size.
pub fn fetch_file(
    client: &HttpClient,
    url: &str,
    dest: &Path,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<u64, SourceError> {
    fetch_with_first(client, url, dest, options, progress, None)
}

/// [`fetch_file`], with the answer to a first request (sent without `Range`)
/// already in hand.
pub(crate) fn fetch_with_first(
    client: &HttpClient,
    url: &str,
    dest: &Path,
    options: &TransferOptions,
    progress: &dyn Progress,
    mut first: Option<Response<ureq::Body>>,
) -> Result<u64, SourceError> {
    // Every download passes here, whatever gave the URL (a manifest, a
    // mirror, an identifier, a redirect's `Location`, a Drive page).
    check_url(url)?;
    if let Some(parent) = dest.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let partial = partial_path(dest);
    let mut attempt: u32 = 0;
    // Since the download last received a byte (or started).
    let mut idle_since = Instant::now();
    let mut had = partial_len(&partial);
    loop {
        let outcome = match first.take() {
            Some(response) => receive(response, url, &partial, None, options, progress)?,
            None => try_once(client, url, &partial, options, progress)?,
        };
        match outcome {
            Attempt::Done => break,
            Attempt::Retry { pause, error } => {
                let have = partial_len(&partial);
                if have > had {
                    idle_since = Instant::now();
                }
                had = have;
                let pause = pause.unwrap_or_else(|| {
                    (options.backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(8))
                });
                let waited = idle_since.elapsed();
                if attempt >= options.retries || waited + pause >= options.patience() {
                    return Err(with_attempts(error, attempt + 1, waited));
                }
                tracing::debug!(%url, attempt, ?pause, %error, "retrying download");
                std::thread::sleep(pause);
                attempt += 1;
            }
        }
    }
    let size = verify(&partial, url, options)?;
    zoo_fs::sync_dir(partial.parent().unwrap_or(Path::new(".")))?;
    fs_err::rename(&partial, dest)?;
    if let Some(parent) = dest.parent() {
        zoo_fs::sync_dir(parent)?;
    }
    Ok(size)
}

/// The partial file's length (0 when there is none).
fn partial_len(partial: &Path) -> u64 {
    fs_err::metadata(partial).map_or(0, |meta| meta.len())
}

/// A timeout error with the attempts made and the time waited in all.
fn with_attempts(error: SourceError, attempts: u32, waited: Duration) -> SourceError {
    match error {
        SourceError::TimedOut {
            url,
            phase,
            timeout,
            ..
        } => SourceError::TimedOut {
            url,
            phase,
            timeout,
            attempts,
            waited,
        },
        other => other,
    }
}

fn try_once(
    client: &HttpClient,
    url: &str,
    partial: &Path,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<Attempt, SourceError> {
    let have = fs_err::metadata(partial)
        .map(|meta| meta.len())
        .unwrap_or(0);
    let range = format!("bytes={have}-");
    // The bytes as stored, so that `Range` offsets and the partial file
    // count the same bytes (ureq would otherwise ask for gzip and inflate).
    let mut headers = vec![("Accept-Encoding", "identity")];
    if have > 0 {
        headers.push(("Range", &range));
    }
    let response = match client.get(url, &headers, true, options.timeout) {
        Ok(response) => response,
        Err(error @ (SourceError::Transport { .. } | SourceError::TimedOut { .. })) => {
            return Ok(Attempt::Retry { pause: None, error });
        }
        Err(error) => return Err(error),
    };
    receive(
        response,
        url,
        partial,
        (have > 0).then_some(have),
        options,
        progress,
    )
}

/// Writes one response into the partial file; `requested` is the first
/// byte asked for with `Range`, if one was sent.
fn receive(
    response: Response<ureq::Body>,
    url: &str,
    partial: &Path,
    requested: Option<u64>,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<Attempt, SourceError> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let status_error = |status: u16| SourceError::Status {
        url: url.to_owned(),
        status,
        detail: None,
        hint: status_hint(status),
    };
    if status == 429 || (500..600).contains(&status) {
        let pause = header("retry-after")
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(|seconds| Duration::from_secs(seconds.min(60)));
        return Ok(Attempt::Retry {
            pause,
            error: status_error(status),
        });
    }
    if status == 416 && requested.is_some() {
        // The partial file is no prefix of this resource: start over.
        remove_partial(partial)?;
        return Ok(Attempt::Retry {
            pause: Some(Duration::ZERO),
            error: status_error(status),
        });
    }
    if !(200..300).contains(&status) {
        return Err(status_error(status));
    }
    let length = header("content-length").and_then(|value| value.trim().parse::<u64>().ok());
    // Where this body belongs in the file: a `206` continues the partial
    // file only when its `Content-Range` says exactly that; anything else
    // is the whole file from byte 0.
    let start = if status == 206 {
        let asked = requested.unwrap_or(0);
        let content_range = header("content-range");
        if let Err(reason) =
            check_content_range(content_range.as_deref(), asked, length, options.size)
        {
            remove_partial(partial)?;
            return Ok(Attempt::Retry {
                pause: Some(Duration::ZERO),
                error: SourceError::BadContentRange {
                    url: url.to_owned(),
                    requested: asked,
                    content_range,
                    reason,
                },
            });
        }
        asked
    } else {
        0
    };
    let announced = length.map(|length| start.saturating_add(length));
    if let (Some(size), Some(announced)) = (options.size, announced)
        && announced > size
    {
        remove_partial(partial)?;
        return Err(SourceError::Oversized {
            url: url.to_owned(),
            limit: size,
            limit_source: FROM_DECLARED_SIZE.to_owned(),
            seen: announced,
            announced: true,
        });
    }
    if let Some(announced) = announced
        && announced > options.max_bytes
    {
        remove_partial(partial)?;
        return Err(SourceError::Oversized {
            url: url.to_owned(),
            limit: options.max_bytes,
            limit_source: FROM_MAX_BYTES.to_owned(),
            seen: announced,
            announced: true,
        });
    }
    // The tighter of the two (the announced size is at most the declared one
    // by now): what the file should be.
    let limit = announced
        .map(|announced| (announced, FROM_CONTENT_LENGTH))
        .or(options.size.map(|size| (size, FROM_DECLARED_SIZE)));
    // Where the body is stopped: that, or the ceiling when it is lower (a
    // declared size above it) or nothing is known.
    let cap = match limit {
        Some((limit, source)) if limit <= options.max_bytes => (limit, source),
        _ => (options.max_bytes, FROM_MAX_BYTES),
    };
    let mut file = fs_err::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(partial)?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
        tracing::debug!(%url, from = start, "resuming download");
    } else {
        file.set_len(0)?;
    }
    progress.start(url, limit.map(|(limit, _)| limit));
    progress.advance(start);
    let mut body = response.into_body();
    let mut reader = body.as_reader();
    let mut buffer = vec![0u8; 1 << 20];
    let mut seen = start;
    let outcome = loop {
        match reader.read(&mut buffer) {
            Ok(0) => break None,
            Ok(read) => {
                let total = seen + read as u64;
                let (limit, source) = cap;
                if total > limit {
                    // Stop here: the rest is not wanted, and what is on
                    // disk is wrong.
                    progress.finish();
                    drop(file);
                    remove_partial(partial)?;
                    return Err(SourceError::Oversized {
                        url: url.to_owned(),
                        limit,
                        limit_source: source.to_owned(),
                        seen: total,
                        announced: false,
                    });
                }
                file.write_all(&buffer[..read])?;
                seen = total;
                progress.advance(read as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => break Some(err),
        }
    };
    progress.finish();
    file.flush()?;
    let expected = limit.map(|(limit, _)| limit);
    let short = expected.is_some_and(|expected| seen < expected);
    if outcome.is_some() || short {
        let error = match (outcome, expected) {
            (Some(err), _) if body_timeout(&err) => SourceError::TimedOut {
                url: url.to_owned(),
                phase: format!("while reading the body, after {seen} bytes"),
                timeout: options.timeout,
                attempts: 1,
                waited: options.timeout,
            },
            (_, Some(expected)) => SourceError::Truncated {
                url: url.to_owned(),
                received: seen,
                expected,
            },
            (outcome, None) => transport_error_from_io(url, outcome),
        };
        return Ok(Attempt::Retry { pause: None, error });
    }
    file.sync_all()?;
    Ok(Attempt::Done)
}

/// Removes the partial file, if there is one.
fn remove_partial(partial: &Path) -> Result<(), SourceError> {
    match fs_err::remove_file(partial) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
        _ => Ok(()),
    }
}

fn transport_error_from_io(url: &str, err: Option<std::io::Error>) -> SourceError {
    SourceError::Transport {
        url: url.to_owned(),
        message: format!(
            "the connection broke while reading the body ({}); try again",
            err.map(|err| err.to_string()).unwrap_or_default()
        ),
    }
}

/// `bytes 100-199/200` -> `(100, 199, Some(200))`; `bytes 100-199/*` ->
/// `(100, 199, None)`; anything else (`bytes */200` included) -> `None`.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let (first, last) = (number(first)?, number(last)?);
    let total = match total.trim() {
        "*" => None,
        total => Some(number(total)?),
    };
    let consistent = first <= last && total.is_none_or(|total| last < total);
    consistent.then_some((first, last, total))
}

/// Why a `206` answer to `Range: bytes={requested}-` does not continue the
/// partial file exactly, if it does not.
fn check_content_range(
    content_range: Option<&str>,
    requested: u64,
    length: Option<u64>,
    size: Option<u64>,
) -> Result<(), String> {
    let Some(value) = content_range else {
        return Err("a `206` answer must say which bytes it holds".to_owned());
    };
    let Some((first, last, total)) = parse_content_range(value) else {
        return Err("it is not `bytes FIRST-LAST/TOTAL` with FIRST <= LAST < TOTAL".to_owned());
    };
    if first != requested {
        return Err(format!("it starts at byte {first}, not {requested}"));
    }
    let held = last - first + 1;
    if let Some(length) = length
        && length != held
    {
        return Err(format!(
            "it holds {held} bytes but `Content-Length` says {length}"
        ));
    }
    let end = last + 1;
    match (total, size) {
        (Some(total), _) if end != total => Err(format!(
            "it stops at byte {last}, before the end of the {total}-byte file"
        )),
        (Some(total), Some(size)) if total != size => Err(format!(
            "the file is {total} bytes but its declared size (`size_bytes`) is {size}"
        )),
        (None, Some(size)) if end != size => Err(format!(
            "it stops at byte {last} but the declared size (`size_bytes`) is {size}"
        )),
        _ => Ok(()),
    }
}

/// Checks size and digest; a file that fails is deleted so the next attempt
/// starts clean.
fn verify(partial: &Path, url: &str, options: &TransferOptions) -> Result<u64, SourceError> {
    let size = fs_err::metadata(partial)?.len();
    if let Some(expected) = options.size
        && expected != size
    {
        fs_err::remove_file(partial)?;
        return Err(SourceError::Verification {
            url: url.to_owned(),
            message: format!("expected {expected} bytes (`size_bytes`), got {size}"),
        });
    }
    if let Some(expected) = &options.sha256 {
        let actual = sha256_file(partial)?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            fs_err::remove_file(partial)?;
            return Err(SourceError::Verification {
                url: url.to_owned(),
                message: format!("sha256 is {actual}, the manifest expects {expected}"),
            });
        }
    }
    if let Some(prefix) = &options.sha256_prefix {
        let actual = sha256_file(partial)?;
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !actual.starts_with(&prefix) {
            fs_err::remove_file(partial)?;
            return Err(SourceError::Verification {
                url: url.to_owned(),
                message: format!(
                    "sha256 is {actual}, the file name's hash expects it to start with `{prefix}`"
                ),
            });
        }
    }
    Ok(size)
}

/// The hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, SourceError> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            read => hasher.update(&buffer[..read]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// Downloads a Google Drive file by id from `base` (e.g.
/// `https://drive.google.com`), following Drive's "can't scan for viruses"
/// confirmation page when it answers with one.
pub fn fetch_google_drive(
    client: &HttpClient,
    base: &str,
    id: &str,
    dest: &Path,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<u64, SourceError> {
    let base = base.trim_end_matches('/');
    let url = format!("{base}/uc?export=download&id={id}");
    let response = client.get(&url, &[], true, options.timeout)?;
    let is_html = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !is_html {
        return fetch_with_first(client, &url, dest, options, progress, Some(response));
    }
    let mut page = String::new();
    response
        .into_body()
        .as_reader()
        .take(4 << 20)
        .read_to_string(&mut page)
        .map_err(|err| transport_error_from_io(&url, Some(err)))?;
    let confirmed = confirmation_url(&page, base, id).ok_or_else(|| SourceError::Transport {
        url: url.clone(),
        message: "Google Drive answered with a web page that holds no download confirmation; is the file shared publicly?".to_owned(),
    })?;
    tracing::debug!(%confirmed, "following Google Drive confirmation");
    fetch_file(client, &confirmed, dest, options, progress)
}

/// The download URL a Drive confirmation page points at: its form (action and
/// hidden inputs), or a `confirm=` token in a link.
fn confirmation_url(page: &str, base: &str, id: &str) -> Option<String> {
    if let Some(form_start) = page.find("<form") {
        let form = &page[form_start
            ..page[form_start..]
                .find("</form>")
                .map_or(page.len(), |end| form_start + end)];
        let action = attribute(form, "action")?;
        let mut params = Vec::new();
        let mut rest = form;
        while let Some(position) = rest.find("<input") {
            let tag_end = rest[position..]
                .find('>')
                .map_or(rest.len(), |end| position + end);
            let tag = &rest[position..tag_end];
            if let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value")) {
                params.push(format!("{name}={value}"));
            }
            rest = &rest[tag_end..];
        }
        let action = action.replace("&amp;", "&");
        let separator = if action.contains('?') { '&' } else { '?' };
        return Some(format!("{action}{separator}{}", params.join("&")));
    }
    let token_start = page.find("confirm=")? + "confirm=".len();
    let token: String = page[token_start..]
        .chars()
        .take_while(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_'))
        .collect();
    (!token.is_empty()).then(|| format!("{base}/uc?export=download&confirm={token}&id={id}"))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stalled server (it accepts the connection and never answers, or
    /// stops sending) holds zoo well under two minutes with the defaults:
    /// every attempt waits at most the timeout for the headers, retries stop
    /// once the download has had no data for the patience, and the last
    /// attempt waits at most to connect and for its headers.
    #[test]
    fn default_network_patience_is_under_two_minutes() {
        let options = TransferOptions::default();
        assert_eq!(options.timeout, Duration::from_secs(10));
        assert_eq!(options.patience(), Duration::from_secs(80));
        assert_eq!(options.longest_stall(), Duration::from_secs(100));
        assert!(options.longest_stall() < Duration::from_secs(120));
        // The retries alone: every attempt a full header wait, every pause
        // the longest backoff; the patience cuts in before the count when
        // pauses are long (`Retry-After`).
        let attempts = options.retries + 1;
        let backoff: Duration = (0..options.retries)
            .map(|attempt| (options.backoff * 2u32.pow(attempt)).min(Duration::from_secs(8)))
            .sum();
        let by_count = options.timeout * attempts + backoff;
        assert_eq!(by_count, Duration::from_millis(67_750));
        assert!(by_count < options.longest_stall());
        // A longer `ZOO_HTTP_TIMEOUT` waits proportionally longer.
        let patient = TransferOptions {
            timeout: Duration::from_secs(60),
            ..TransferOptions::default()
        };
        assert_eq!(patient.patience(), Duration::from_secs(480));
    }

    #[test]
    fn content_ranges_parse_strictly() {
        let cases = [
            ("bytes 100-199/200", Some((100, 199, Some(200)))),
            (" bytes 0-0/1 ", Some((0, 0, Some(1)))),
            ("bytes 100-199/*", Some((100, 199, None))),
            ("bytes */200", None),
            ("bytes 100-99/200", None),
            ("bytes 100-200/200", None),
            ("bytes 100-199", None),
            ("bytes -5-199/200", None),
            ("bytes +5-199/200", None),
            ("items 0-1/2", None),
            ("bytes 0-18446744073709551616/*", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_content_range(value), expected, "{value}");
        }
    }

    #[test]
    fn a_206_must_continue_the_partial_file_exactly() {
        // (Content-Range, requested, Content-Length, declared size, error needle)
        let cases = [
            (Some("bytes 100-199/200"), 100, Some(100), Some(200), None),
            (Some("bytes 100-199/200"), 100, None, None, None),
            (Some("bytes 100-199/*"), 100, None, Some(200), None),
            (Some("bytes 0-199/200"), 0, Some(200), None, None),
            (None, 100, Some(100), None, Some("must say which bytes")),
            (Some("garbage"), 100, None, None, Some("is not `bytes")),
            (
                Some("bytes 0-199/200"),
                100,
                None,
                None,
                Some("starts at byte 0"),
            ),
            (
                Some("bytes 150-199/200"),
                100,
                None,
                None,
                Some("starts at byte 150, not 100"),
            ),
            (
                Some("bytes 100-149/200"),
                100,
                None,
                None,
                Some("before the end"),
            ),
            (
                Some("bytes 100-199/200"),
                100,
                Some(5),
                None,
                Some("`Content-Length` says 5"),
            ),
            (
                Some("bytes 100-199/200"),
                100,
                None,
                Some(300),
                Some("declared size"),
            ),
            (
                Some("bytes 100-199/*"),
                100,
                None,
                Some(300),
                Some("declared size"),
            ),
        ];
        for (range, requested, length, size, needle) in cases {
            let result = check_content_range(range, requested, length, size);
            match needle {
                None => assert_eq!(result, Ok(()), "{range:?}"),
                Some(needle) => {
                    let reason = result.unwrap_err();
                    assert!(reason.contains(needle), "{range:?}: {reason}");
                }
            }
        }
    }

    #[test]
    fn drive_confirmation_pages() {
        let form = r#"<html><form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
            <input type="hidden" name="id" value="ABC"><input type="hidden" name="export" value="download">
            <input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1"></form></html>"#;
        assert_eq!(
            confirmation_url(form, "https://drive.google.com", "ABC").unwrap(),
            "https://drive.usercontent.google.com/download?id=ABC&export=download&confirm=t&uuid=u-1"
        );
        let link =
            r#"<a href="/uc?export=download&amp;confirm=x1_Y&amp;id=ABC">Download anyway</a>"#;
        assert_eq!(
            confirmation_url(link, "https://drive.google.com", "ABC").unwrap(),
            "https://drive.google.com/uc?export=download&confirm=x1_Y&id=ABC"
        );
        assert_eq!(
            confirmation_url("<html>quota exceeded</html>", "b", "i"),
            None
        );
    }
}
