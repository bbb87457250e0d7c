//! Robust file downloads: resume, retry, verify, then rename into place.
//!
//! Bytes go to a hidden `.<name>.partial` file beside the destination. An
//! interrupted transfer (a dropped connection, a killed process) leaves that
//! file, and the next attempt asks the server for the rest with `Range`
//! (starting over when the server ignores it). Connect errors, 5xx answers
//! and 429 (honouring `Retry-After`) are retried with backoff, a bounded
//! number of times. The finished file is checked against the expected size
//! and sha256 when given, synced, and renamed onto the destination, so the
//! destination either does not exist or is complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::http::Response;

use crate::error::SourceError;
use crate::http::{HttpClient, status_hint};
use crate::progress::Progress;

/// How a file download is checked and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    /// The expected sha256, hex (checked before the file is accepted).
    pub sha256: Option<String>,
    /// The expected size in bytes.
    pub size: Option<u64>,
    /// Attempts after the first.
    pub retries: u32,
    /// The first backoff pause; it doubles per attempt, up to 8 seconds.
    pub backoff: Duration,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            sha256: None,
            size: None,
            retries: 5,
            backoff: Duration::from_millis(250),
        }
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

pub(crate) fn fetch_with_first(
    client: &HttpClient,
    url: &str,
    dest: &Path,
    options: &TransferOptions,
    progress: &dyn Progress,
    mut first: Option<Response<ureq::Body>>,
) -> Result<u64, SourceError> {
    if let Some(parent) = dest.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let partial = partial_path(dest);
    let mut attempt: u32 = 0;
    loop {
        let outcome = match first.take() {
            Some(response) => receive(response, url, &partial, 0, progress)?,
            None => try_once(client, url, &partial, progress)?,
        };
        match outcome {
            Attempt::Done => break,
            Attempt::Retry { pause, error } => {
                if attempt >= options.retries {
                    return Err(error);
                }
                let pause = pause.unwrap_or_else(|| {
                    (options.backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(8))
                });
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

fn try_once(
    client: &HttpClient,
    url: &str,
    partial: &Path,
    progress: &dyn Progress,
) -> Result<Attempt, SourceError> {
    let have = fs_err::metadata(partial)
        .map(|meta| meta.len())
        .unwrap_or(0);
    let range = format!("bytes={have}-");
    let headers: &[(&str, &str)] = if have > 0 { &[("Range", &range)] } else { &[] };
    let response = match client.get(url, headers, true) {
        Ok(response) => response,
        Err(error) => {
            return Ok(Attempt::Retry { pause: None, error });
        }
    };
    receive(response, url, partial, have, progress)
}

/// Writes one response into the partial file.
fn receive(
    response: Response<ureq::Body>,
    url: &str,
    partial: &Path,
    have: u64,
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
    if status == 416 && have > 0 {
        // The partial file is no prefix of this resource: start over.
        fs_err::remove_file(partial)?;
        return Ok(Attempt::Retry {
            pause: Some(Duration::ZERO),
            error: status_error(status),
        });
    }
    if !(200..300).contains(&status) {
        return Err(status_error(status));
    }
    let length = header("content-length").and_then(|value| value.parse::<u64>().ok());
    let resumed = status == 206
        && header("content-range")
            .and_then(|range| parse_content_range_start(&range))
            .is_some_and(|start| start == have);
    let mut file = fs_err::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(partial)?;
    let start = if resumed { have } else { 0 };
    if resumed {
        file.seek(SeekFrom::Start(have))?;
        tracing::debug!(%url, from = have, "resuming download");
    } else {
        file.set_len(0)?;
    }
    progress.start(url, length.map(|length| length + start));
    progress.advance(start);
    let mut body = response.into_body();
    let mut reader = body.as_reader();
    let mut buffer = vec![0u8; 1 << 20];
    let mut received: u64 = 0;
    let outcome = loop {
        match reader.read(&mut buffer) {
            Ok(0) => break None,
            Ok(read) => {
                file.write_all(&buffer[..read])?;
                received += read as u64;
                progress.advance(read as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => break Some(err),
        }
    };
    progress.finish();
    file.flush()?;
    let short = length.is_some_and(|length| received < length);
    if outcome.is_some() || short {
        let error = match length {
            Some(expected) => SourceError::Truncated {
                url: url.to_owned(),
                received,
                expected,
            },
            None => transport_error_from_io(url, outcome),
        };
        return Ok(Attempt::Retry { pause: None, error });
    }
    file.sync_all()?;
    Ok(Attempt::Done)
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

/// `bytes 100-199/200` -> 100.
fn parse_content_range_start(value: &str) -> Option<u64> {
    value
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
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
    let response = client.get(&url, &[], true)?;
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

    #[test]
    fn content_range_starts() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes */200"), None);
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
