//! Running under systemd so the supervisor itself cannot silently die: `systemd-unit` prints a
//! unit with `Restart=always` and a watchdog, and the harness tells systemd it is alive
//! (sd_notify `WATCHDOG=1`) only while its sampling loop is healthy. The notify protocol is one
//! datagram on the socket named in `$NOTIFY_SOCKET`; a path starting with `@` is abstract.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    /// Half of `$WATCHDOG_USEC`, when systemd asked for a watchdog.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    /// `None` when not started by systemd with a notify socket.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let address = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(Path::new(path)).ok()?
        };
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2));
        Some(Self {
            socket: UnixDatagram::unbound().ok()?,
            address,
            watchdog_every,
        })
    }

    pub fn notify(&self, state: &str) {
        let _ = self.socket.send_to_addr(state.as_bytes(), &self.address);
    }
}

/// A unit that runs `memwarden ARGS` with the watchdog; `exe` is this memwarden's path.
pub fn unit(exe: &Path, args: &[String]) -> String {
    let command: Vec<String> = std::iter::once(exe.display().to_string())
        .chain(args.iter().cloned())
        .map(|word| quote(&word))
        .collect();
    format!(
        "# Written by `memwarden systemd-unit`. Install as /etc/systemd/system/memwarden.service,\n\
         # then: systemctl daemon-reload && systemctl enable --now memwarden\n\
         [Unit]\n\
         Description=memwarden: {summary}\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={command}\n\
         # The harness feeds the watchdog only while its sampling loop is healthy; silence for\n\
         # this long makes systemd kill and restart it.\n\
         WatchdogSec=30s\n\
         Restart=always\n\
         RestartSec=5s\n\
         # SIGTERM stops the workers (grace period, then SIGKILL); give that time.\n\
         KillMode=mixed\n\
         TimeoutStopSec=60s\n\
         # The kernel's OOM killer should pick a worker, never the supervisor.\n\
         OOMScoreAdjust=-900\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        summary = args.first().map_or("supervisor", String::as_str),
        command = command.join(" "),
    )
}

/// systemd's command-line quoting: words with spaces, quotes, backslashes or `$`/`%` are
/// double-quoted with those escaped (`%` doubled, `$` doubled).
fn quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if !word.is_empty()
        && !word.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_quotes_what_systemd_would_split_or_expand() {
        let args = [
            "run",
            "--policy",
            "/etc/mw policy.toml",
            "--",
            "python",
            "-c",
            "print('$HOME 5%')",
        ]
        .map(String::from);
        let text = unit(Path::new("/usr/local/bin/memwarden"), &args);
        assert!(text.contains(
            "ExecStart=/usr/local/bin/memwarden run --policy \"/etc/mw policy.toml\" -- python -c \"print('$$HOME 5%%')\"\n"
        ), "{text}");
        assert!(
            text.contains("Type=notify\n")
                && text.contains("WatchdogSec=30s\n")
                && text.contains("Restart=always\n")
        );
    }

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let address = std::os::unix::net::SocketAddr::from_pathname(&path).expect("address");
        let notifier = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            address,
            watchdog_every: None,
        };
        notifier.notify("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("received");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
