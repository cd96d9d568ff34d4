//! Writes the helper package (always) and memwarden's `sitecustomize` (with `--trace-python`,
//! and in a replay, whose Optuna hook it starts) into the run directory, and says what the workers' environment needs to find them.
//!
//! The files are embedded at build time, so a copied binary carries them: nothing to install.
//! A `sitecustomize` of memwarden's own is the usual way (`opentelemetry-instrument`,
//! `ddtrace-run`) to start code in every Python process of a tree without touching it; it then
//! runs the `sitecustomize` the environment already had.

use std::path::{Path, PathBuf};

const PACKAGE: &[(&str, &str)] = &[
    (
        "memwarden/__init__.py",
        include_str!("../../python/memwarden/__init__.py"),
    ),
    (
        "memwarden/_trace.py",
        include_str!("../../python/memwarden/_trace.py"),
    ),
    (
        "memwarden/_replay.py",
        include_str!("../../python/memwarden/_replay.py"),
    ),
];
const SITECUSTOMIZE: &str = include_str!("../../python/sitecustomize.py");

/// What `install` wrote, and the environment the workers get for it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Where the tracer writes (`None` without `--trace-python`).
    pub trace_dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

/// `existing_pythonpath` is the harness's own PYTHONPATH, kept after memwarden's directory.
/// `replay_optuna` starts the zero-code Optuna replay (python/memwarden/_replay.py).
pub fn install(
    run_dir: &Path,
    trace: bool,
    replay_optuna: bool,
    existing_pythonpath: Option<&str>,
) -> std::io::Result<Installed> {
    let lib = run_dir.join("python");
    std::fs::create_dir_all(lib.join("memwarden"))?;
    for (name, text) in PACKAGE {
        std::fs::write(lib.join(name), text)?;
    }
    let lib_text = lib
        .canonicalize()
        .unwrap_or_else(|_| lib.clone())
        .display()
        .to_string();
    let pythonpath = match existing_pythonpath.filter(|p| !p.is_empty()) {
        Some(existing) => format!("{lib_text}:{existing}"),
        None => lib_text,
    };
    let mut env = vec![("PYTHONPATH".to_string(), pythonpath)];
    if trace || replay_optuna {
        std::fs::write(lib.join("sitecustomize.py"), SITECUSTOMIZE)?;
    }
    if replay_optuna {
        env.push(("MEMWARDEN_REPLAY_OPTUNA".into(), "1".into()));
    }
    let trace_dir = if trace {
        let dir = run_dir.join("python-trace");
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize().unwrap_or(dir);
        env.push(("MEMWARDEN_TRACE_DIR".into(), dir.display().to_string()));
        Some(dir)
    } else {
        None
    };
    Ok(Installed { trace_dir, env })
}
