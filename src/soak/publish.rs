//! Getting results off the box while the run lasts, so a machine that freezes still leaves
//! them behind: the run directory copied into a directory (another disk, a network mount), or
//! a command of the user's (rsync, `aws s3 sync`) run with `{run_dir}` in its arguments — as
//! argv, never through a shell.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A publish command that runs longer than this is killed; the next checkpoint tries again.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq)]
pub enum Publisher {
    /// Copy the run directory into `DIR/<run name>/`.
    Dir(PathBuf),
    /// Run this argv; `{run_dir}` in an argument becomes the run directory's path.
    Command(Vec<String>),
}

/// Publishes once; says what it did, or why it could not.
pub fn publish(run_dir: &Path, publisher: &Publisher) -> Result<String, String> {
    match publisher {
        Publisher::Dir(target) => {
            let name = run_dir.file_name().ok_or("the run directory has no name")?;
            let into = target.join(name);
            let copied =
                copy_changed(run_dir, &into).map_err(|e| format!("{}: {e}", into.display()))?;
            remove_gone(run_dir, &into).map_err(|e| format!("{}: {e}", into.display()))?;
            Ok(format!("{copied} file(s) copied to {}", into.display()))
        }
        Publisher::Command(argv) => {
            let dir = run_dir.display().to_string();
            let argv: Vec<String> = argv.iter().map(|a| a.replace("{run_dir}", &dir)).collect();
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
            match wait_or_kill(&mut child, COMMAND_TIMEOUT) {
                Ok(Some(status)) if status.success() => Ok(format!("{} succeeded", argv[0])),
                Ok(Some(status)) => Err(format!("{} failed: {status}", argv[0])),
                Ok(None) => Err(format!(
                    "{} ran past {:?} and was killed",
                    argv[0], COMMAND_TIMEOUT
                )),
                Err(e) => Err(format!("{}: {e}", argv[0])),
            }
        }
    }
}

/// Waits for `child` at most `limit`; past it, kills and reaps it and gives `None`. (The
/// standard library waits without a limit; a publish command or a report that hangs must not
/// hold the soak.)
pub(super) fn wait_or_kill(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies the files of `from` that are new or changed (by size and modification time) into
/// `to`, each through a temporary name and a rename, so a reader there never sees half a file.
/// Sockets and other special files are skipped. Returns how many files were copied.
fn copy_changed(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copied += copy_changed(&entry.path(), &target)?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let source = entry.metadata()?;
        let same = std::fs::metadata(&target)
            .is_ok_and(|t| t.len() == source.len() && t.modified().ok() >= source.modified().ok());
        if same {
            continue;
        }
        let temporary = to.join(format!(".{}.partial", entry.file_name().to_string_lossy()));
        std::fs::copy(entry.path(), &temporary)?;
        std::fs::rename(&temporary, &target)?;
        copied += 1;
    }
    Ok(copied)
}

/// Removes what `from` no longer holds from the copy (a segment log compacted away, an old
/// checkpoint), so the copy reads like the original.
fn remove_gone(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        let source = from.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if source.is_dir() {
                remove_gone(&source, &entry.path())?;
            } else {
                std::fs::remove_dir_all(entry.path())?;
            }
        } else if !source.exists() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_receives_new_and_changed_files_only() {
        let temp = tempfile::tempdir().expect("temp dir");
        let run = temp.path().join("run-1");
        std::fs::create_dir_all(run.join("logs")).expect("mkdir");
        std::fs::write(run.join("events.log"), "a").expect("write");
        std::fs::write(run.join("logs/worker-0.log"), "b").expect("write");
        let target = temp.path().join("published");
        let publisher = Publisher::Dir(target.clone());
        assert_eq!(
            publish(&run, &publisher),
            Ok(format!(
                "2 file(s) copied to {}",
                target.join("run-1").display()
            ))
        );
        assert!(
            publish(&run, &publisher).is_ok_and(|s| s.starts_with("0 file(s)")),
            "nothing changed"
        );
        std::fs::write(run.join("events.log"), "ab").expect("append");
        std::fs::remove_file(run.join("logs/worker-0.log")).expect("remove");
        assert!(publish(&run, &publisher).is_ok_and(|s| s.starts_with("1 file(s)")));
        assert_eq!(
            std::fs::read_to_string(target.join("run-1/events.log")).expect("read"),
            "ab"
        );
        assert!(
            !target.join("run-1/logs/worker-0.log").exists(),
            "gone from the copy too"
        );
    }

    #[test]
    fn a_command_gets_the_run_directory_as_one_argument() {
        let temp = tempfile::tempdir().expect("temp dir");
        let run = temp.path().join("run; touch HACKED");
        std::fs::create_dir_all(&run).expect("mkdir");
        let marker = temp.path().join("seen");
        let argv = vec![
            "cp".to_string(),
            "-r".into(),
            "{run_dir}".into(),
            marker.display().to_string(),
        ];
        assert!(publish(&run, &Publisher::Command(argv)).is_ok());
        assert!(marker.is_dir(), "copied as one path");
        assert!(!Path::new("HACKED").exists() && !temp.path().join("HACKED").exists());
        assert!(publish(&run, &Publisher::Command(vec!["false".into()]))
            .is_err_and(|e| e.starts_with("false failed")));
    }
}
