//! memwarden's exit codes, documented in the README, and which errors map to which: a finding
//! is 1, bad usage or input 2, and a failure of memwarden's own work 3, so a full disk in the
//! middle of a 12-hour soak does not read like a typo on the command line.

pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDING: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// memwarden's own work failed: writing its recording, report or export (a full disk, an I/O
/// error), or a thread of its own that died. Not the input's fault, unlike 2.
pub const EXIT_FAILED: u8 = 3;
/// `check` could not judge: no kind of some worker had enough data (PSS read too rarely, too
/// few trials, a per-hour budget on seconds of recording). Not a pass, and not a leak found.
pub const EXIT_NOT_ENOUGH_DATA: u8 = 4;

/// An error of memwarden's own work rather than of what it was given; `main` exits with
/// [`EXIT_FAILED`] when one is anywhere in the chain. It adds no words: it prints as the error
/// it wraps, whose causes follow as before.
#[derive(Debug)]
pub struct OwnWork(pub anyhow::Error);

impl std::fmt::Display for OwnWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for OwnWork {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Marks a failure as memwarden's own (see [`OwnWork`]).
pub fn own_work<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> anyhow::Result<T> {
    result.map_err(|error| anyhow::Error::new(OwnWork(error.into())))
}

/// An error and its causes on one line, `a: b: c`, like anyhow's `{:#}` but never repeating a
/// cause its error already printed (some libraries' errors, polars' I/O error among them, show
/// their source in their message and also return it as `source()`).
pub fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit code for an error: [`EXIT_FAILED`] for memwarden's own work, [`EXIT_BAD_INPUT`]
/// for the rest.
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<OwnWork>()) {
        EXIT_FAILED
    } else {
        EXIT_BAD_INPUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_is_printed_once_and_own_work_is_exit_3() {
        let io = || std::io::Error::other("disk full");
        let error = anyhow::Error::new(Repeats(io())).context("cannot write x");
        assert_eq!(describe(&error), "cannot write x: outer: disk full");
        assert_eq!(exit_code_of(&error), EXIT_BAD_INPUT);
        let error = own_work::<(), _>(Err(anyhow::Error::new(io()).context("cannot write y")))
            .expect_err("bug: an error")
            .context("while reporting");
        assert_eq!(
            describe(&error),
            "while reporting: cannot write y: disk full"
        );
        assert_eq!(exit_code_of(&error), EXIT_FAILED);
    }
}
