//! The thin shells around `render`: an HTTP `/metrics` endpoint and a textfile for
//! node_exporter. Each runs on a thread of its own and reads a copy of the live status taken
//! under its lock, so a scrape never slows or blocks a tick (the sampler never touches that
//! lock; the writer holds it once a batch). Errors after the start are said once and never stop
//! the run.

use super::http::Server;
use super::render;
use crate::console::say;
use crate::live::{LiveStatus, SharedStatus};
use crate::stop_token::StopToken;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The textfile's name in its directory (node_exporter reads `*.prom`).
pub const TEXTFILE: &str = "memwarden.prom";
/// How often the textfile is rewritten (node_exporter reads it at each of its own scrapes).
const TEXTFILE_EVERY: Duration = Duration::from_secs(2);
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// `PORT`, `HOST:PORT` or `[V6]:PORT`; a bare port binds loopback.
    pub listen: Option<String>,
    /// A directory node_exporter's textfile collector reads.
    pub textfile: Option<PathBuf>,
}

/// A failure to start exporting: the user's input (an address, a directory), said in one line.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-listen {0}: not an address (give PORT, HOST:PORT or [V6]:PORT)")]
    BadAddress(String),
    #[error("--metrics-listen {address}: {cause}")]
    Listen { address: String, cause: String },
    #[error("--metrics-textfile {}: {cause}", dir.display())]
    Textfile { dir: PathBuf, cause: String },
}

/// Exporting, until `finish`.
pub struct Exporter {
    stop: StopToken,
    threads: Vec<JoinHandle<()>>,
    server: Option<Server>,
    textfile: Option<PathBuf>,
    live: SharedStatus,
    /// Where `/metrics` is served (the port the system chose for port 0).
    pub listening: Option<SocketAddr>,
}

impl Exporter {
    /// Binds the address and writes the first textfile now, so a mistake is an error before the
    /// workers start; then serves from threads of its own.
    pub fn start(options: &MetricsOptions, live: SharedStatus) -> Result<Self, MetricsError> {
        let stop = StopToken::new();
        let mut exporter = Self {
            stop: stop.clone(),
            threads: Vec::new(),
            server: None,
            textfile: None,
            live: live.clone(),
            listening: None,
        };
        if let Some(address) = &options.listen {
            let listener = bind(address)?;
            exporter.listening = listener.local_addr().ok();
            let live = live.clone();
            let route = move |path: &str| route(path, &live);
            let server =
                Server::start(listener, Arc::new(route)).map_err(|e| MetricsError::Listen {
                    address: address.clone(),
                    cause: e.to_string(),
                })?;
            exporter.server = Some(server);
        }
        if let Some(dir) = &options.textfile {
            let path = dir.join(TEXTFILE);
            write_textfile(&path, &text(&snapshot(&live))).map_err(|cause| {
                MetricsError::Textfile {
                    dir: dir.clone(),
                    cause,
                }
            })?;
            exporter.textfile = Some(path.clone());
            let (live, stop) = (live.clone(), stop.clone());
            exporter.threads.push(spawn("memwarden-textfile", move || {
                keep_writing(&path, &live, &stop)
            }));
        }
        Ok(exporter)
    }

    /// Stops serving and writes the textfile a last time, with the run marked over
    /// (`memwarden_run_active 0`), so an alert on a stale tick does not fire for a run that ended.
    pub fn finish(mut self) {
        self.stop.stop();
        if let Some(server) = self.server.take() {
            server.stop();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(path) = &self.textfile {
            if let Err(cause) = write_textfile(path, &final_text(&snapshot(&self.live))) {
                say(format!("note: could not write {}: {cause}", path.display()));
            }
        }
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .expect("a thread can be spawned")
}

/// `9477` binds 127.0.0.1:9477; anything else must name the host.
pub(super) fn bind(address: &str) -> Result<TcpListener, MetricsError> {
    let candidates: Vec<SocketAddr> = match address.parse::<u16>() {
        Ok(port) => vec![SocketAddr::from(([127, 0, 0, 1], port))],
        Err(_) => address
            .to_socket_addrs()
            .map_err(|_| MetricsError::BadAddress(address.into()))?
            .collect(),
    };
    let mut last = None;
    for candidate in candidates {
        match TcpListener::bind(candidate) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    let cause = match last {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            "the address is in use (another memwarden or exporter listens there)".to_string()
        }
        Some(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this host has that address".to_string()
        }
        Some(e) => e.to_string(),
        None => return Err(MetricsError::BadAddress(address.into())),
    };
    Err(MetricsError::Listen {
        address: address.into(),
        cause,
    })
}

/// A copy of the status: the lock is held for the copy, never while encoding or writing.
fn snapshot(live: &SharedStatus) -> LiveStatus {
    live.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn text(status: &LiveStatus) -> String {
    render(status, env!("CARGO_PKG_VERSION"), status.stopping.is_none())
}

fn final_text(status: &LiveStatus) -> String {
    render(status, env!("CARGO_PKG_VERSION"), false)
}

/// What `/metrics` and `/` answer; anything else is 404.
fn route(path: &str, live: &SharedStatus) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => ("200 OK", CONTENT_TYPE, text(&snapshot(live))),
        "/" => (
            "200 OK",
            "text/plain",
            "memwarden: metrics at /metrics\n".into(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n".into(),
        ),
    }
}

fn keep_writing(path: &Path, live: &SharedStatus, stop: &StopToken) {
    let mut failing = false;
    let mut next = std::time::Instant::now() + TEXTFILE_EVERY;
    while !stop.sleep_until_or_stop(next) {
        next += TEXTFILE_EVERY;
        match write_textfile(path, &text(&snapshot(live))) {
            Ok(()) if failing => {
                failing = false;
                say(format!("note: writing {} again", path.display()));
            }
            Ok(()) => {}
            Err(cause) if !failing => {
                failing = true;
                say(format!(
                    "note: could not write {} ({cause}); the run goes on",
                    path.display()
                ));
            }
            Err(_) => {}
        }
    }
}

/// Replaced atomically: node_exporter reads the old file or the new one, never half of one. The
/// temporary name does not end in `.prom`, so the collector never reads it.
fn write_textfile(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })
}
