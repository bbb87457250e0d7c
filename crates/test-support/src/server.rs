//! A small threaded HTTP/1.1 server for tests.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Answers a request.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path without the query string, percent-encoding kept.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first byte asked for by a `Range: bytes=N-...` header, if any.
    pub fn range_start(&self) -> Option<u64> {
        self.header("range")?
            .trim()
            .strip_prefix("bytes=")?
            .split('-')
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The value of query parameter `name`, if present.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// Something going wrong on purpose while the body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send this many body bytes, then close the connection.
    Truncate {
        /// Body bytes sent before closing.
        after: usize,
    },
    /// Send this many body bytes, pause, then send the rest.
    Stall {
        /// Body bytes sent before pausing.
        after: usize,
        /// How long to pause.
        pause: Duration,
    },
    /// Send this many body bytes, then keep the connection open and silent
    /// until the client hangs up (or a minute has passed).
    Hang {
        /// Body bytes sent before going silent.
        after: usize,
    },
}

/// How the end of a body is marked on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// A `Content-Length` header with the body's size (unless the response
    /// sets its own `Content-Length`, which is then sent as given, true or
    /// not).
    #[default]
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of at most 64 KiB; any
    /// `Content-Length` the response sets is sent as well (clients must
    /// ignore it).
    Chunked,
    /// No length at all: the body ends when the connection closes.
    Close,
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers; `Connection` is added, and so is `Content-Length`
    /// (with [`Framing::Length`], unless given here).
    pub headers: Vec<(String, String)>,
    /// The full body (also what `Content-Length` announces).
    pub body: Vec<u8>,
    /// A fault to inject while sending the body.
    pub fault: Option<Fault>,
    /// How the body's end is marked.
    pub framing: Framing,
    /// When set, the body never ends: `0, 1, ..., 255, 0, ...` is sent until
    /// the client hangs up (`body` is ignored).
    pub endless: bool,
    /// When set, the body is this slice of shared bytes (served without a
    /// copy; `body` is then empty).
    shared: Option<(Arc<Vec<u8>>, usize, usize)>,
}

impl Response {
    /// A response with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            fault: None,
            framing: Framing::Length,
            endless: false,
            shared: None,
        }
    }

    /// `status` with a body that never ends (`0, 1, ..., 255, 0, ...` until
    /// the client hangs up), without a length; add `.chunked()` to send it
    /// in chunks, or a `Content-Length` header to announce a (false) size.
    pub fn endless(status: u16) -> Self {
        Self {
            endless: true,
            framing: Framing::Close,
            ..Self::status(status)
        }
    }

    fn body_bytes(&self) -> &[u8] {
        match &self.shared {
            Some((bytes, start, end)) => &bytes[*start..*end],
            None => &self.body,
        }
    }

    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::status(200).body(body)
    }

    /// A JSON body with `status`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(value.to_string())
    }

    /// A redirect (`301`, `302`, `307`, ...) to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("Location", location)
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Cuts the connection after `after` body bytes.
    pub fn truncate_after(mut self, after: usize) -> Self {
        self.fault = Some(Fault::Truncate { after });
        self
    }

    /// Pauses for `pause` after `after` body bytes.
    pub fn stall_after(mut self, after: usize, pause: Duration) -> Self {
        self.fault = Some(Fault::Stall { after, pause });
        self
    }

    /// Goes silent after `after` body bytes (0: right after the headers)
    /// and holds the connection open until the client hangs up.
    pub fn hang_after(mut self, after: usize) -> Self {
        self.fault = Some(Fault::Hang { after });
        self
    }

    /// Sends the body with `Transfer-Encoding: chunked`.
    pub fn chunked(mut self) -> Self {
        self.framing = Framing::Chunked;
        self
    }

    /// Sends the body without a length: it ends when the connection closes.
    pub fn close_delimited(mut self) -> Self {
        self.framing = Framing::Close;
        self
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Handler>>,
    fallback: Mutex<Option<Handler>>,
    requests: Mutex<Vec<Request>>,
}

/// An HTTP server on `127.0.0.1` with an ephemeral port, stopped on drop.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TestServer {
    /// Binds `127.0.0.1:0` and starts serving on a background thread.
    ///
    /// # Panics
    ///
    /// When the loopback interface cannot be bound (a broken test machine).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&thread_state);
                std::thread::spawn(move || {
                    // A client hanging up early is not the server's problem.
                    let _ = serve_connection(stream, &state);
                });
            }
        });
        Self { addr, state, stop }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Answers every request for `path` with `response`.
    pub fn route(&self, path: &str, response: Response) {
        self.handle(path, move |_| response.clone());
    }

    /// Answers requests for `path` with `handler`.
    pub fn handle(
        &self,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) {
        lock(&self.state.routes).insert(path.to_owned(), Arc::new(handler));
    }

    /// Answers requests for `path` with `responses` in order; the last one
    /// repeats once the others are used up.
    pub fn sequence(&self, path: &str, responses: Vec<Response>) {
        let queue = Mutex::new(VecDeque::from(responses));
        self.handle(path, move |_| {
            let mut queue = lock(&queue);
            match queue.len() {
                0 => Response::status(500).body("empty sequence"),
                1 => queue[0].clone(),
                _ => queue.pop_front().unwrap_or_else(|| Response::status(500)),
            }
        });
    }

    /// Serves `content` at `path` like a static file server: `HEAD`,
    /// `Accept-Ranges`, and `Range: bytes=a-b` / `bytes=a-` with `206`.
    pub fn file(&self, path: &str, content: impl Into<Vec<u8>>) {
        let content: Arc<Vec<u8>> = Arc::new(content.into());
        self.handle(path, move |request| shared_file_response(request, &content));
    }

    /// Answers requests no route matches (instead of `404`).
    pub fn fallback(&self, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        *lock(&self.state.fallback) = Some(Arc::new(handler));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state.requests).clone()
    }

    /// The requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The response a static file server gives for `content`: `Range` requests
/// get `206` (or `416`), others `200`, all with `Accept-Ranges`.
pub fn file_response(request: &Request, content: &[u8]) -> Response {
    shared_file_response(request, &Arc::new(content.to_vec()))
}

fn shared_file_response(request: &Request, content: &Arc<Vec<u8>>) -> Response {
    let total = content.len();
    let slice = |response: Response, start: usize, end: usize| Response {
        shared: Some((Arc::clone(content), start, end)),
        ..response
    };
    let mut response = match request
        .header("range")
        .and_then(|range| parse_range(range, total))
    {
        Some((start, end)) => slice(
            Response::status(206).header("Content-Range", &format!("bytes {start}-{end}/{total}")),
            start,
            end + 1,
        ),
        None if request.header("range").is_some() => {
            Response::status(416).header("Content-Range", &format!("bytes */{total}"))
        }
        None => slice(Response::status(200), 0, total),
    };
    response = response
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream");
    response
}

/// Parses a single `bytes=a-b` or `bytes=a-` range into inclusive bounds.
fn parse_range(header: &str, total: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => total.checked_sub(1)?,
        end => end.parse::<usize>().ok()?.min(total.checked_sub(1)?),
    };
    (start <= end && start < total).then_some((start, end))
}

fn serve_connection(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut request = Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if let Some(length) = request
        .header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
    {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    lock(&state.requests).push(request.clone());

    let handler = lock(&state.routes)
        .get(&request.path)
        .cloned()
        .or_else(|| lock(&state.fallback).clone());
    let response = match handler {
        Some(handler) => handler(&request),
        None => Response::status(404).body("not found"),
    };
    write_response(stream, &request, &response)
}

fn write_response(
    mut stream: TcpStream,
    request: &Request,
    response: &Response,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = response.body_bytes();
    let has_length = response
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    match response.framing {
        Framing::Length if !has_length => {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Length | Framing::Close => {}
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        return stream.flush();
    }
    let mut writer = BodyWriter {
        stream: &mut stream,
        framing: response.framing,
    };
    if response.endless {
        let pattern: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        // Ends when the client hangs up and a write fails.
        loop {
            writer.write(&pattern)?;
        }
    }
    match response.fault {
        None => writer.write(body)?,
        Some(Fault::Truncate { after }) => {
            writer.write(&body[..after.min(body.len())])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)?;
            return Ok(());
        }
        Some(Fault::Stall { after, pause }) => {
            let split = after.min(body.len());
            writer.write(&body[..split])?;
            writer.stream.flush()?;
            std::thread::sleep(pause);
            writer.write(&body[split..])?;
        }
        Some(Fault::Hang { after }) => {
            writer.write(&body[..after.min(body.len())])?;
            writer.stream.flush()?;
            // Silent until the client closes its end (a read returns 0 or
            // fails) or the read timeout set on the connection expires.
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut byte = [0u8; 1];
            while matches!(stream.read(&mut byte), Ok(read) if read > 0) {}
            return Ok(());
        }
    }
    writer.finish()?;
    stream.flush()
}

/// Writes body bytes in the response's framing.
struct BodyWriter<'a> {
    stream: &'a mut TcpStream,
    framing: Framing,
}

impl BodyWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.framing != Framing::Chunked {
            return self.stream.write_all(bytes);
        }
        for chunk in bytes.chunks(64 * 1024) {
            self.stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            self.stream.write_all(chunk)?;
            self.stream.write_all(b"\r\n")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.framing == Framing::Chunked {
            self.stream.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http_says() {
        let cases = [
            ("bytes=0-9", 100, Some((0, 9))),
            ("bytes=90-", 100, Some((90, 99))),
            ("bytes=90-200", 100, Some((90, 99))),
            ("bytes=100-", 100, None),
            ("bytes=5-2", 100, None),
            ("items=0-1", 100, None),
            ("bytes=0-", 0, None),
        ];
        for (header, total, expected) in cases {
            assert_eq!(parse_range(header, total), expected, "{header}");
        }
    }
}
