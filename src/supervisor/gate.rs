//! The trial gate: a Unix socket per worker, named in the worker's `MEMWARDEN_GATE`, where a
//! cooperative worker asks before each trial. The protocol is one line each way per connection:
//!
//! ```text
//! worker:  trial [ID]\n
//! harness: go\n | wait SECONDS\n | abort\n
//! ```
//!
//! `wait`: memory is short, ask again after that many seconds. `abort`: do not start; the
//! worker is about to be stopped (restarted). A harness that cannot answer within
//! [`ANSWER_TIMEOUT`] answers `go`: a stuck supervisor must never stall training.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One question, with the way back.
pub struct GateQuestion {
    pub worker: u32,
    pub reply: Sender<String>,
}

pub struct Gate {
    pub path: PathBuf,
}

impl Gate {
    /// Listens at `path` on a thread of its own; questions go to `questions`.
    pub fn open(
        path: &Path,
        worker: u32,
        questions: crossbeam_channel::Sender<GateQuestion>,
    ) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::thread::Builder::new()
            .name(format!("memwarden-gate-{worker}"))
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    answer(stream, worker, &questions);
                }
            })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(stream: UnixStream, worker: u32, questions: &crossbeam_channel::Sender<GateQuestion>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if BufReader::new(stream).take_line(&mut line).is_err() {
        return;
    }
    let reply = if line.split_whitespace().next() == Some("trial") {
        let (tx, rx) = mpsc::channel();
        let asked = questions.send(GateQuestion { worker, reply: tx }).is_ok();
        match asked.then(|| rx.recv_timeout(ANSWER_TIMEOUT)) {
            Some(Ok(answer)) => answer,
            _ => "go".to_string(),
        }
    } else {
        "error unknown question: send `trial`".to_string()
    };
    let _ = writeln!(writer, "{reply}");
}

trait TakeLine {
    fn take_line(self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: std::io::Read> TakeLine for BufReader<R> {
    /// At most 1 KiB: a question is one short line.
    fn take_line(self, line: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(1024).read_line(line)
    }
}

/// A worker's side, for the fixture worker and tests: asks once, returns the answer's words.
pub fn ask(path: &Path, trial: &str) -> std::io::Result<Vec<String>> {
    let mut stream = UnixStream::connect(path)?;
    writeln!(stream, "trial {trial}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_gets_the_harness_answer_or_go_when_it_is_silent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gate.sock");
        let (tx, rx) = crossbeam_channel::unbounded();
        let _gate = Gate::open(&path, 3, tx).expect("gate opens");
        let answering = std::thread::spawn(move || {
            let question: GateQuestion = rx.recv().expect("a question");
            assert_eq!(question.worker, 3);
            question.reply.send("wait 5".into()).expect("reply");
            rx
        });
        assert_eq!(ask(&path, "7").expect("answer"), ["wait", "5"]);
        let rx = answering.join().expect("answered");
        drop(rx);
        // Nobody listens to questions any more: the worker is not held up.
        assert_eq!(ask(&path, "8").expect("answer"), ["go"]);
    }
}
