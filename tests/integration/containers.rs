//! memwarden inside a container: orphans kept and reaped, PID 1, memory outside every tree, and
//! the examples under `contrib/`. Memory cgroups are `cgroups`'s.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The states of memwarden's children, read from outside (the test is memwarden's parent).
fn children_states(pid: u32) -> Vec<(i32, char)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some((child, state))
        })
        .collect()
}

/// A worker's shell starts a daemon (`setsid`, a session of its own) and a short-lived
/// subshell, then exits before memwarden has seen either; both are reparented to memwarden.
/// The daemon stays attributed to the worker and is stopped with it at the run's end; the
/// subshell's exit leaves no zombie behind.
#[test]
fn a_child_that_outlives_its_parent_stays_with_its_worker_and_leaves_no_zombie() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let worker = format!(
        "sh -c 'setsid sleep 20 & (sleep 0.3) & exit 0'; exec {} fixture-worker --trials 16 --trial-ms 100 --gap-ms 50",
        exe()
    );
    let child = memwarden()
        .arg("run")
        .arg("--out")
        .arg(&dir)
        .args(["--", "sh", "-c", &worker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("memwarden starts");
    let started = Instant::now();
    let mut zombies = Vec::new();
    let mut looked = 0;
    // Not a wait for an event: memwarden's children are looked at every 0.1 s for 2 s, as
    // a zombie would show at any of those looks.
    while started.elapsed() < Duration::from_millis(2000) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() < Duration::from_millis(900) {
            continue; // the subshell ends at 0.3 s and is reaped within 0.2 s after
        }
        looked += 1;
        zombies.extend(
            children_states(child.id())
                .into_iter()
                .filter(|(_, state)| *state == 'Z'),
        );
    }
    let out = child.wait_with_output().expect("memwarden ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(looked > 5, "looked {looked} times");
    let recording = memwarden::recording::Recording::open(&dir).expect("recording");
    // Seen as `sleep 20`, or as `setsid sleep 20` when the orphan scan came before its exec.
    let daemon = recording.events.iter().find_map(|e| match &e.kind {
        memwarden::recording::EventKind::ProcessSeen { pid, command, .. }
        | memwarden::recording::EventKind::Exec { pid, command, .. }
            if command == "sleep 20" =>
        {
            Some((e.worker, *pid))
        }
        _ => None,
    });
    let Some((worker, pid)) = daemon else {
        panic!("the daemon was never attributed: {:#?}", recording.events);
    };
    let still = alive(pid);
    if still {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    assert_eq!(worker, Some(0));
    assert!(!still, "the daemon {pid} outlived its worker's run");
    assert!(zombies.is_empty(), "zombies under memwarden: {zombies:?}");
    assert!(
        recording.events.iter().any(|e| matches!(&e.kind,
            memwarden::recording::EventKind::Note { message }
                if message.starts_with(&format!("pid {pid} ("))
                    && message.contains("outlived its parent")
                    && message.contains("it stays with worker 0"))),
        "no note on the orphan"
    );
}

/// As the PID 1 of a container (here a new PID namespace), memwarden says so, passes SIGTERM on
/// to its workers and ends cleanly: no `tini` in front of it is needed.
#[test]
fn as_pid_1_it_passes_sigterm_on_to_the_workers() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(exe())
        .args(["run", "--grace", "10s", "--out"])
        .arg(&dir)
        .args([
            "--",
            &exe(),
            "fixture-worker",
            "--trials",
            "2000",
            "--trial-ms",
            "100",
            "--gap-ms",
            "50",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let unshare = unshare.expect("unshare runs (util-linux: apt-get install -y util-linux)");
    // memwarden is unshare's only child, PID 1 inside the namespace.
    let mut harness = None;
    eventually(Duration::from_secs(10), || {
        dir.join("manifest.json").exists()
    });
    if let Some((pid, _)) = children_states(unshare.id()).first() {
        harness = Some(*pid);
    }
    let Some(harness) = harness.filter(|_| dir.join("manifest.json").exists()) else {
        let out = unshare.wait_with_output().expect("unshare ends");
        panic!(
            "memwarden did not start as PID 1 of a new PID namespace (unshare --pid needs root or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    // SIGTERM while the worker runs its trials, not while it starts.
    wait_until("the worker's first trial has started", || {
        memwarden::recording::Recording::open(&dir).is_ok_and(|r| !r.trials().is_empty())
    });
    let asked = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness),
        nix::sys::signal::SIGTERM,
    )
    .expect("SIGTERM sent");
    let out = unshare.wait_with_output().expect("unshare ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "it waited for the grace period: {stderr}"
    );
    assert!(stderr.contains("memwarden runs as PID 1"), "{stderr}");
    let recording = memwarden::recording::Recording::open(&dir).expect("recording");
    assert_eq!(
        recording.manifest.end_reason.as_deref(),
        Some("stop requested (signal)")
    );
    let exit = recording.events.iter().find_map(|e| match e.kind {
        memwarden::recording::EventKind::WorkerExit { signal, .. } => Some(signal),
        _ => None,
    });
    assert_eq!(exit, Some(Some(15)), "the worker got SIGTERM");
}

/// A worker that leaves files in `/dev/shm` that no process maps: the report tells the memory
/// outside every tree and names the files.
#[test]
fn files_left_in_dev_shm_are_reported_as_memory_outside_the_trees_by_name() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    let out = fixture_run(
        &dir,
        "",
        "--trials 44 --trial-ms 200 --gap-ms 50 --shm-leak-mib 2",
    )
    .output()
    .expect("memwarden runs");
    let (main, _) = pids(&dir);
    let worker = main[&0];
    let left: Vec<PathBuf> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("memwarden-fixture-{worker}-")))
        })
        .collect();
    for file in &left {
        let _ = std::fs::remove_file(file);
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(left.len(), 44, "the fixture left its files");
    let findings = analyze(&dir);
    let outside = findings.outside_trees.expect("/dev/shm was listed");
    assert!(outside.shm_grew(), "{outside:?}");
    // The closing listing, after the worker exited, holds all 44 files (88 MiB); the last
    // scheduled one, at 10 s, held about 40.
    assert!(
        outside.shm_last_bytes - outside.shm_first_bytes >= 86.0 * MIB,
        "{outside:?}"
    );
    let named = outside
        .unmapped_files
        .iter()
        .filter(|f| f.name.starts_with(&format!("memwarden-fixture-{worker}-")))
        .count();
    assert!(named >= 30, "{outside:?}");
    let markdown = report(&dir, &temp.path().join("report"), &[]);
    assert!(
        markdown.contains("`/dev/shm` grew from")
            && markdown.contains("that no worker's process mapped (of the 32 largest listed; ")
            && markdown.contains(&format!("more were not): `memwarden-fixture-{worker}-")),
        "{markdown}"
    );
}

/// `--grace 60s` in an argument list, in seconds.
fn grace_seconds<'a>(mut args: impl Iterator<Item = &'a str>) -> u64 {
    args.find(|a| *a == "--grace")
        .and_then(|_| args.next())
        .and_then(|g| g.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .expect("a --grace in seconds")
}

/// The Dockerfile's last stage runs memwarden as the entrypoint (PID 1, no init in front of it)
/// and its comment's `--stop-timeout` leaves memwarden its grace period.
#[test]
fn the_dockerfile_makes_memwarden_the_entrypoint_with_time_to_stop() {
    let text = std::fs::read_to_string("contrib/docker/Dockerfile").expect("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().expect("stages");
    let instruction = |name: &str| -> Vec<String> {
        let line = last_stage
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in the last stage"));
        serde_json::from_str(line.trim()).expect("exec form")
    };
    assert_eq!(instruction("ENTRYPOINT "), ["memwarden"]);
    let cmd = instruction("CMD ");
    assert_eq!(cmd[0], "run");
    let code: String = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!code.contains("tini") && !code.contains("dumb-init"));
    let stop_timeout: u64 = text
        .split("--stop-timeout ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the run command names --stop-timeout");
    assert!(stop_timeout > grace_seconds(cmd.iter().map(String::as_str)));
}

/// The Kubernetes Job: a memory limit, a termination grace period longer than memwarden's, the
/// run directory on a persistent volume, and a policy memwarden accepts.
#[test]
fn the_kubernetes_job_gives_memwarden_a_limit_time_to_stop_and_a_volume_for_its_run() {
    let python = venv_python();
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            "contrib/kubernetes/job.yaml",
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let job = docs
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == "Job"))
        .expect("a Job");
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "run");
    // memwarden accepts the arguments, and serves metrics on the port the pod declares.
    let parsed = <memwarden::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("memwarden").chain(args.iter().copied()),
    );
    let Ok(memwarden::cli::Cli {
        command: memwarden::cli::Command::Run(run),
    }) = parsed
    else {
        panic!("memwarden does not accept {args:?}: {parsed:?}");
    };
    let port = container["ports"][0]["containerPort"]
        .as_u64()
        .expect("a port");
    assert_eq!(
        run.metrics.metrics_listen.as_deref(),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    let termination = pod["terminationGracePeriodSeconds"].as_u64().expect("set");
    assert!(termination > grace_seconds(args.iter().copied()));
    assert!(container["resources"]["limits"]["memory"].is_string());
    let out_dir = args
        .iter()
        .skip_while(|a| **a != "--out")
        .nth(1)
        .expect("--out");
    let mount = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| out_dir.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .expect("the run directory is on a volume");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("its volume");
    assert!(volume["persistentVolumeClaim"].is_object(), "{volume}");
    let policy = docs
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == "ConfigMap"))
        .and_then(|c| c["data"]["policy.toml"].as_str())
        .expect("the policy");
    memwarden::policy::Policy::parse(policy, "policy.toml").expect("a valid policy");
}

/// The Slurm script runs as a batch job would, with `srun` standing in for Slurm's: memwarden
/// records the workers into the run directory and writes the report; the time-limit signal
/// comes earlier than memwarden's grace period ends.
#[test]
fn the_slurm_script_runs_memwarden_through_srun_and_reports() {
    let script = std::fs::read_to_string("contrib/slurm/memwarden.sbatch").expect("script");
    let warning: u64 = script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --signal=TERM@"))
        .and_then(|s| s.trim().parse().ok())
        .expect("a time-limit signal");
    let code: Vec<&str> = script
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(warning > grace_seconds(code.into_iter()));
    let temp = tempdir();
    let bin = temp.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let srun = bin.join("srun");
    // srun's options go; the step runs here.
    std::fs::write(
        &srun,
        "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n",
    )
    .expect("srun");
    std::fs::set_permissions(&srun, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let memwarden_dir = Path::new(env!("CARGO_BIN_EXE_memwarden"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        memwarden_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = temp.path().join("run");
    let out = std::process::Command::new("bash")
        .arg("contrib/slurm/memwarden.sbatch")
        .args([
            "memwarden",
            "fixture-worker",
            "--trials",
            "4",
            "--trial-ms",
            "50",
            "--gap-ms",
            "20",
            "--leak-mib",
            "2",
        ])
        .env("PATH", path)
        .env("SLURM_JOB_ID", "4242")
        .env("SLURM_ARRAY_TASK_ID", "7")
        .env("TEXTFILE", temp.path())
        .env("FLEET", temp.path().join("fleet"))
        .env("WORKERS", "2")
        .env("RUN_DIR", &dir)
        .env("POLICY", temp.path().join("policy.toml"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recording = memwarden::recording::Recording::open(&dir).expect("recorded");
    assert_eq!(recording.manifest.workers, 2);
    assert!(dir.join("policy.toml").exists(), "the policy was in force");
    assert!(dir.join("report/report.md").exists());
    // node_exporter's textfile, with the run marked over; and the run in the fleet layout,
    // with the job and array task it ran as.
    let textfile = std::fs::read_to_string(temp.path().join("memwarden.prom")).expect("textfile");
    assert!(
        textfile.contains("\nmemwarden_run_active 0\n"),
        "{textfile}"
    );
    let host = memwarden::recording::layout::partition_value(&recording.manifest.host);
    let published = temp.path().join(format!("fleet/runs/host={host}/run=run"));
    let orchestrator = memwarden::recording::Recording::open(&published)
        .expect("published")
        .manifest
        .orchestrator
        .expect("Slurm's identity");
    assert_eq!(orchestrator.slurm_job_id.as_deref(), Some("4242"));
    assert_eq!(orchestrator.slurm_array_task_id.as_deref(), Some("7"));
}
