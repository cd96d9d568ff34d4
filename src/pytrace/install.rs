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
        "memwarden/_diagnose.py",
        include_str!("../../python/memwarden/_diagnose.py"),
    ),
    (
        "memwarden/_tensors.py",
        include_str!("../../python/memwarden/_tensors.py"),
    ),
    (
        "memwarden/_replay.py",
        include_str!("../../python/memwarden/_replay.py"),
    ),
    (
        "memwarden/_pytest.py",
        include_str!("../../python/memwarden/_pytest.py"),
    ),
    (
        "memwarden/_native.py",
        include_str!("../../python/memwarden/_native.py"),
    ),
];
/// The native allocation sampler (src/pytrace/native_sampler.c, built by build.rs); empty where
/// it could not be built (not glibc, no C compiler).
const NATIVE_SAMPLER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmemwarden_native.so"));
/// The sampler's file in the run directory's `python/`.
pub const NATIVE_SAMPLER_FILE: &str = "libmemwarden_native.so";
const SITECUSTOMIZE: &str = include_str!("../../python/sitecustomize.py");

/// What `install` wrote, and the environment the workers get for it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Where the tracer writes (`None` without `--trace-python`).
    pub trace_dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

/// The harness's own values of the variables `install` sets, kept after memwarden's.
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    pub pythonpath: Option<String>,
    pub pytest_plugins: Option<String>,
    pub ld_preload: Option<String>,
    /// `MEMWARDEN_NATIVE=0`: no native sampler under `--trace-python`.
    pub no_native: bool,
}

impl Inherited {
    pub fn from_env() -> Self {
        Self {
            pythonpath: std::env::var("PYTHONPATH").ok(),
            pytest_plugins: std::env::var("PYTEST_PLUGINS").ok(),
            ld_preload: std::env::var("LD_PRELOAD").ok(),
            no_native: std::env::var("MEMWARDEN_NATIVE").as_deref() == Ok("0"),
        }
    }
}

/// `replay_optuna` starts the zero-code Optuna replay (python/memwarden/_replay.py). Every
/// worker also gets `PYTEST_PLUGINS=memwarden`: a worker that is a pytest run then reports each
/// test as a trial (python/memwarden/_pytest.py); any other worker never reads it.
pub fn install(
    run_dir: &Path,
    trace: bool,
    replay_optuna: bool,
    inherited: &Inherited,
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
    let pythonpath = match inherited.pythonpath.as_deref().filter(|p| !p.is_empty()) {
        Some(existing) => format!("{lib_text}:{existing}"),
        None => lib_text,
    };
    let plugins = match inherited
        .pytest_plugins
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        Some(existing) if existing.split(',').any(|p| p.trim() == "memwarden") => {
            existing.to_string()
        }
        Some(existing) => format!("{existing},memwarden"),
        None => "memwarden".to_string(),
    };
    let mut env = vec![
        ("PYTHONPATH".to_string(), pythonpath),
        ("PYTEST_PLUGINS".to_string(), plugins),
    ];
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
        if let Some(preload) = preload_native_sampler(&lib, inherited)? {
            env.push(("LD_PRELOAD".into(), preload));
        }
        Some(dir)
    } else {
        None
    };
    Ok(Installed { trace_dir, env })
}

/// Writes the native sampler beside the helper package and gives the workers' `LD_PRELOAD`
/// with it first (the harness's own entries kept after it); `None` where there is no sampler
/// to preload or `MEMWARDEN_NATIVE=0` asks for none. A worker that is not Python carries it
/// unused; one where it cannot load (a static binary, musl) runs without it, and the tracer
/// says so (`_native.py`).
fn preload_native_sampler(lib: &Path, inherited: &Inherited) -> std::io::Result<Option<String>> {
    if NATIVE_SAMPLER.is_empty() || inherited.no_native {
        return Ok(None);
    }
    let path = lib.join(NATIVE_SAMPLER_FILE);
    std::fs::write(&path, NATIVE_SAMPLER)?;
    let path = path.canonicalize().unwrap_or(path).display().to_string();
    // The dynamic loader splits LD_PRELOAD at spaces and colons: a path with either would
    // preload pieces of itself.
    if path.contains([' ', ':']) {
        return Ok(None);
    }
    Ok(Some(
        match inherited
            .ld_preload
            .as_deref()
            .filter(|p| !p.trim().is_empty())
        {
            Some(existing) => format!("{path}:{existing}"),
            None => path,
        },
    ))
}

#[cfg(test)]
mod tests {
    /// A module of the package left out of `PACKAGE` fails every worker's import of the tracer
    /// at run time, far from here.
    #[test]
    fn every_module_of_the_package_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python/memwarden");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("python/memwarden")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".py"))
            .map(|name| format!("memwarden/{name}"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::PACKAGE.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
