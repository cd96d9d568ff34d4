//! The `/metrics` endpoint's HTTP server: GET (and HEAD) of a path, answered and closed. It is
//! hand-written because its limits must be memwarden's: the port may be reachable by any pod of
//! a cluster, and the process behind it is the supervisor that must outlive everything else.
//!
//! What it promises, whatever a client sends:
//! - **Bounded memory.** A request's line and headers are read into one fixed buffer of
//!   [`HEAD_BYTES`]; a longer head is answered 431 and closed. A body is never read, so a
//!   `Content-Length` (of any size, or not a number) allocates nothing.
//! - **Bounded threads.** [`WORKERS`] threads serve connections taken from a queue of
//!   [`QUEUE`]; a connection that finds the queue full is closed at once.
//! - **Bounded time.** A head must arrive within [`HEAD_DEADLINE`] and a reply leave within
//!   [`WRITE_TIMEOUT`], so idle or slow connections free their thread.
//! - **Nothing reaches the supervisor.** Each request is served under `catch_unwind`: a panic
//!   (a bug in rendering, say) answers 500, is said once, and the thread serves the next.
//!
//! [`parse_head`] is pure (bytes in, a request or a rejection out) and is what the fuzz test
//! drives.

use crate::console::say;
use crossbeam_channel::{bounded, Receiver, TrySendError};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The request line and headers together, at most.
pub const HEAD_BYTES: usize = 8 * 1024;
/// Threads that serve connections.
pub const WORKERS: usize = 4;
/// Accepted connections waiting for a thread; more are closed at once.
pub const QUEUE: usize = 64;
/// The whole head must arrive within this, however slowly it trickles.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(3);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a client asked, once its head was read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, without a query.
    pub path: String,
    /// HEAD: the reply has headers only.
    pub head_only: bool,
}

/// Why a head is answered with an error status (and the connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not `METHOD TARGET HTTP/1.x`.
    BadRequest,
    /// A method other than GET or HEAD.
    Method,
    /// The head did not fit [`HEAD_BYTES`].
    TooLarge,
}

impl Reject {
    fn status(self) -> &'static str {
        match self {
            Reject::BadRequest => "400 Bad Request",
            Reject::Method => "405 Method Not Allowed",
            Reject::TooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Where a complete head ends in `bytes` (just past its blank line), if it does.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads a request head: only its first line matters (headers are not needed to serve two
/// paths, so none is parsed and none can cost anything).
pub fn parse_head(head: &[u8]) -> Result<Request, Reject> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| Reject::BadRequest)?;
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Reject::BadRequest);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target.starts_with('/') {
        return Err(Reject::BadRequest);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Reject::Method),
    };
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    Ok(Request { path, head_only })
}

/// What to answer for a path: status, content type and body.
pub type Route = dyn Fn(&str) -> (&'static str, &'static str, String) + Send + Sync;

/// Serving, until `stop`.
pub struct Server {
    stop: Arc<AtomicBool>,
    address: SocketAddr,
    threads: Vec<JoinHandle<()>>,
    /// Connections closed unserved because the queue was full (for tests and the final note).
    pub turned_away: Arc<AtomicU64>,
}

impl Server {
    pub fn start(listener: TcpListener, route: Arc<Route>) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let turned_away = Arc::new(AtomicU64::new(0));
        let (queue, connections) = bounded::<TcpStream>(QUEUE);
        let panicked = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(WORKERS + 1);
        for i in 0..WORKERS {
            let (connections, route, panicked) =
                (connections.clone(), route.clone(), panicked.clone());
            threads.push(spawn(&format!("memwarden-http-{i}"), move || {
                serve_queue(&connections, &*route, &panicked)
            })?);
        }
        let (stop_flag, away) = (stop.clone(), turned_away.clone());
        threads.push(spawn("memwarden-http", move || {
            // The accept loop is begun again should it ever fail (it holds no state but the
            // listener), and says so once.
            for restart in 0u64.. {
                let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    accept(&listener, &queue, &stop_flag, &away)
                }));
                if accepted.is_ok() || stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                if restart == 0 {
                    say("note: the metrics endpoint's accept loop failed (a bug); it starts again");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Dropping `queue` ends the serving threads once they finish what they hold.
        })?);
        Ok(Self {
            stop,
            address,
            threads,
            turned_away,
        })
    }

    /// Stops accepting, lets the threads finish the connections they hold, and joins them.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept loop blocks in accept(): one connection of our own wakes it.
        let mut wake = self.address;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Hands accepted connections to the serving threads until `stop`; a full queue closes them.
fn accept(
    listener: &TcpListener,
    queue: &crossbeam_channel::Sender<TcpStream>,
    stop: &AtomicBool,
    away: &AtomicU64,
) {
    for connection in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(connection) = connection else {
            // A client that reset is its own business; out of descriptors, a pause keeps the
            // loop from spinning until some are closed.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if let Err(TrySendError::Full(c)) = queue.try_send(connection) {
            away.fetch_add(1, Ordering::Relaxed);
            drop(c);
        }
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(work)
}

fn serve_queue(connections: &Receiver<TcpStream>, route: &Route, panicked: &AtomicBool) {
    for mut connection in connections.iter() {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serve(&mut connection, route)
        }));
        if served.is_err() {
            let _ = respond(
                &mut connection,
                "500 Internal Server Error",
                "text/plain",
                "",
                false,
            );
            if !panicked.swap(true, Ordering::Relaxed) {
                say("note: the metrics endpoint failed on a request (a bug); it goes on serving");
            }
        }
    }
}

/// One connection: read a head within the limits, answer, close.
fn serve(connection: &mut TcpStream, route: &Route) {
    let _ = connection.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buffer = [0u8; HEAD_BYTES];
    let request = match read_head(connection, &mut buffer) {
        Ok(head) => parse_head(head),
        Err(Some(reject)) => Err(reject),
        Err(None) => return, // timed out or went away: nothing to answer
    };
    match request {
        Ok(request) => {
            let (status, content_type, body) = route(&request.path);
            let _ = respond(connection, status, content_type, &body, request.head_only);
        }
        Err(reject) => {
            let _ = respond(connection, reject.status(), "text/plain", "", false);
        }
    }
}

/// The head, read into `buffer` until its blank line. `Err(None)`: the client was too slow or
/// left; `Err(Some(TooLarge))`: it did not fit.
fn read_head<'b>(
    connection: &mut TcpStream,
    buffer: &'b mut [u8; HEAD_BYTES],
) -> Result<&'b [u8], Option<Reject>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut filled = 0;
    loop {
        if let Some(end) = head_end(&buffer[..filled]) {
            return Ok(&buffer[..end]);
        }
        if filled == buffer.len() {
            return Err(Some(Reject::TooLarge));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || connection.set_read_timeout(Some(left)).is_err() {
            return Err(None);
        }
        match connection.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => filled += n,
        }
    }
}

fn respond(
    connection: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes())?;
    if !head_only {
        connection.write_all(body.as_bytes())?;
    }
    connection.flush()?;
    // Unread request bytes (a body we never read) would make close() send a reset that can
    // cut our reply short; shutting the write side first delivers it.
    connection.shutdown(std::net::Shutdown::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_get_names_its_path_without_the_query() {
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Request {
                path: "/metrics".into(),
                head_only: false
            })
        );
        assert_eq!(
            parse_head(b"HEAD / HTTP/1.0\n\n").map(|r| r.head_only),
            Ok(true)
        );
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Err(Reject::Method)
        );
        assert_eq!(
            parse_head(b"GET metrics HTTP/1.1\r\n\r\n"),
            Err(Reject::BadRequest)
        );
        assert_eq!(
            parse_head(b"GET /  HTTP/1.1\r\n\r\n"),
            Err(Reject::BadRequest)
        );
        assert_eq!(parse_head(b"\xff\xfe"), Err(Reject::BadRequest));
    }

    #[test]
    fn a_head_ends_at_its_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    proptest! {
        // The fuzz target for the request reader: the suite runs the configured number of cases
        // (PROPTEST_CASES); benches/fuzz.sh runs a million. Whatever the bytes, parsing returns.
        #[test]
        fn any_bytes_parse_or_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                            prefix in prop_oneof![Just(&b""[..]), Just(&b"GET /"[..]), Just(&b"HEAD /metrics HTTP/1.1\r\n"[..])]) {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&bytes);
            if let Some(end) = head_end(&input) {
                prop_assert!(end <= input.len());
                let _ = parse_head(&input[..end]);
            }
            if let Ok(request) = parse_head(&input) {
                prop_assert!(request.path.starts_with('/'));
                prop_assert!(!request.path.contains('?'));
            }
        }
    }
}
