//! What is said about the findings, decided once: which facts, in which order, with which
//! numbers. The terminal (`analysis::text`) and the report (`report::sections`) only render
//! these statements, each in its own register: a line of clauses, or sentences in Markdown.
//! Both renderers match every variant and destructure every field without `..`, so a fact or
//! a field added here does not compile until both have rendered it or said why they leave it
//! out; neither can pick its own facts, order or arithmetic again.

use crate::analysis::judge::findings::{Basis, Diagnosis, Findings, Forecast, KindFinding};
use crate::analysis::judge::findings::{ProcessFinding, WorkerFinding};
use crate::analysis::judge::verdict::Verdict;
use crate::analysis::kind::Kind;
use crate::analysis::measures::{ParameterFinding, Rate};

/// One worker: its verdict on the kind that grows, that kind's rate, and the facts behind it.
pub struct WorkerStatement<'a> {
    pub worker: u32,
    pub verdict: Verdict,
    pub kind: Kind,
    /// `None` when the worker's kind has no finding at all (too little data to say anything).
    pub rate: Option<GrowthRate>,
    pub facts: Vec<Fact<'a>>,
}

/// The rate a verdict rests on: per trial when trials were seen (with the hourly rate beside
/// it where known), per hour otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrowthRate {
    PerTrial { trial: Rate, hour: Option<Rate> },
    PerHour(Rate),
    Unknown,
}

/// The facts behind a worker's verdict, in the order they are told.
pub enum Fact<'a> {
    /// The first trial from which growth is clear of noise.
    ClearFrom {
        trial: &'a str,
    },
    /// A single step, flat before and after.
    Step {
        size_bytes: f64,
        trial: &'a str,
    },
    /// Growth that stopped (told only when there is no step).
    FlatFrom {
        trial: &'a str,
    },
    /// One-sided confidence that retained memory grows (0..1); not told without data.
    Confidence {
        fraction: f64,
    },
    /// Retained at the start and end (`span`), over `trials` trials or the whole run (`None`),
    /// and the highest level seen.
    Retained {
        span: Option<(f64, f64)>,
        trials: Option<usize>,
        peak_bytes: Option<f64>,
    },
    /// A named mechanism behind the growth (copy-on-read, allocator retention).
    Diagnosis(&'a Diagnosis),
    /// The process of the tree that holds the growth.
    Process {
        pid: i32,
        main: bool,
        command: &'a str,
        share: Option<f64>,
    },
    /// A mapping that grew, with the regions it gained (count, typical size) when it did.
    Mapping {
        name: &'a str,
        growth_bytes: f64,
        new_regions: Option<(i64, f64)>,
    },
    /// A line of Python code whose retained allocations grow (`--trace-python`).
    Site {
        file: &'a str,
        line: u32,
        code: Option<&'a str>,
        via: Option<&'a str>,
        study: bool,
        /// Processes growing at this line (forked children), the rate summed over them.
        processes: usize,
        per_trial: Rate,
        parameter: Option<&'a str>,
    },
    /// A holder of PyTorch tensors whose bytes grow (`--trace-python`'s tensor census).
    Holder(&'a crate::analysis::locate::holders::HolderFinding),
    /// How much was traced, how much of the growth the sites explain, and what it cost.
    Traced {
        processes: usize,
        reports: usize,
        explained: Option<f64>,
        mean_cost_ms: f64,
        max_cost_ms: f64,
        /// A traced trial's time over an untraced one's, and the untraced trials left between
        /// stretches of traced ones.
        slowdown: Option<f64>,
        gap: Option<u32>,
        stretch: Option<u32>,
        /// The lines are the native sampler's (malloc and its kin), not the Python heap's.
        native: bool,
    },
    /// The search framework's own state grows (`--trace-python`), whatever the verdict.
    Study(&'a crate::analysis::locate::study::StudyGrowth),
    Hint(&'a str),
    /// Every other measured kind: its verdict and rate on the worker's basis (bytes).
    OtherKinds(Vec<OtherKind>),
}

pub struct OtherKind {
    pub kind: Kind,
    pub verdict: Verdict,
    pub basis: Basis,
    pub bytes: Option<f64>,
}

/// A parameter that goes with retained growth.
pub struct ParameterStatement<'a> {
    pub what: ParameterWhat<'a>,
    pub effect_bytes: f64,
    /// The 95% interval of the effect (categorical values only).
    pub interval: Option<(f64, f64)>,
    pub trials_with: usize,
    pub trials_without: usize,
    pub p_value: f64,
}

pub enum ParameterWhat<'a> {
    /// Trials with `name=value` differ.
    Value {
        name: &'a str,
        value: &'a str,
    },
    /// Larger values of a numeric parameter grow more (Spearman's rho).
    Trend {
        name: &'a str,
        rho: f64,
    },
    Name(&'a str),
}

/// When memory runs out, and what to change.
pub struct ForecastStatement<'a> {
    pub outlook: Outlook,
    pub advice: &'a [String],
    /// Restart limits were computed, so restart rules would keep the machine up meanwhile.
    pub restart_rules_help: bool,
}

pub enum Outlook {
    /// At `growth_bytes_per_hour` in total, `available_bytes` (less the reserve) last `hours`,
    /// or `trials` more trials per worker.
    RunsOut {
        growth_bytes_per_hour: f64,
        available_bytes: f64,
        hours: f64,
        trials: Option<f64>,
    },
    /// A run too short for a rate per hour: when memory runs out, in trials only.
    RunsOutInTrials {
        growth_bytes_per_trial: f64,
        available_bytes: f64,
        trials: f64,
        window_s: f64,
    },
    Holds {
        mem_total_bytes: f64,
        available_bytes: f64,
    },
}

pub fn worker(w: &WorkerFinding) -> WorkerStatement<'_> {
    let Some(k) = w.kind_finding(w.kind) else {
        return WorkerStatement {
            worker: w.worker,
            verdict: w.verdict,
            kind: w.kind,
            rate: None,
            facts: Vec::new(),
        };
    };
    let mut facts = Vec::new();
    if let Some(trial) = &k.first_clear_trial {
        facts.push(Fact::ClearFrom { trial });
    }
    if let Some(step) = &k.step {
        facts.push(Fact::Step {
            size_bytes: step.size_bytes,
            trial: &step.trial,
        });
    } else if let Some(trial) = &k.plateau_from_trial {
        facts.push(Fact::FlatFrom { trial });
    }
    if w.verdict != Verdict::InsufficientData {
        facts.push(Fact::Confidence {
            fraction: k.confidence,
        });
    }
    let span = k.first_bytes.zip(k.last_bytes);
    if span.is_some() || k.peak_bytes.is_some() {
        facts.push(Fact::Retained {
            span,
            trials: (k.basis == Basis::Trials).then_some(w.trials),
            peak_bytes: k.peak_bytes,
        });
    }
    facts.extend(w.diagnoses.iter().map(Fact::Diagnosis));
    if let Some(ProcessFinding {
        pid,
        command,
        main,
        share,
        ..
    }) = &w.process
    {
        facts.push(Fact::Process {
            pid: *pid,
            main: *main,
            command,
            share: *share,
        });
    }
    for site in &w.sites {
        facts.push(Fact::Site {
            file: &site.file,
            line: site.line,
            code: site.code.as_deref(),
            via: site.via.as_deref(),
            study: site.study,
            processes: site.processes,
            per_trial: site.per_trial,
            parameter: site.parameter.as_deref(),
        });
    }
    facts.extend(w.holders.iter().map(Fact::Holder));
    if let Some(t) = &w.tracing {
        facts.push(Fact::Traced {
            processes: t.processes,
            reports: t.reports,
            explained: t.explained,
            mean_cost_ms: t.mean_cost_ms,
            max_cost_ms: t.max_cost_ms,
            slowdown: t.slowdown,
            gap: t.gap,
            stretch: t.stretch,
            native: t.native,
        });
    }
    if let Some(study) = w.tracing.as_ref().and_then(|t| t.study.as_ref()) {
        facts.push(Fact::Study(study));
    }
    for m in &w.mappings {
        facts.push(Fact::Mapping {
            name: &m.name,
            growth_bytes: m.growth_bytes,
            new_regions: m
                .region_bytes
                .filter(|_| m.regions_added > 0)
                .map(|each| (m.regions_added, each)),
        });
    }
    facts.extend(w.hints.iter().map(|h| Fact::Hint(h)));
    facts.push(Fact::OtherKinds(
        w.kinds
            .iter()
            .filter(|o| o.kind != w.kind)
            .map(|o| OtherKind {
                kind: o.kind,
                verdict: o.verdict,
                basis: o.basis,
                bytes: match o.basis {
                    Basis::Trials => o.per_trial.map(|r| r.bytes),
                    Basis::Time => o.per_hour.map(|r| r.bytes),
                },
            })
            .collect(),
    ));
    WorkerStatement {
        worker: w.worker,
        verdict: w.verdict,
        kind: w.kind,
        rate: Some(growth_rate(k)),
        facts,
    }
}

/// Bytes per trial in KiB below a MiB (a study's growth is KiB per trial).
fn small_size(bytes: f64) -> String {
    if bytes.abs() < 1048576.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        crate::units::size(bytes)
    }
}

/// The study's own growth in one clause, for the lines that end a run.
pub fn study_brief(s: &crate::analysis::locate::study::StudyGrowth) -> String {
    let whole = s.measured_bytes.map_or(String::new(), |w| {
        format!("; the worker as a whole {} per trial", small_size(w))
    });
    format!(
        "study-side growth: the search framework's own lines keep {} more per traced trial (confidence {:.0}%{whole})",
        small_size(s.per_trial.bytes),
        100.0 * s.confidence
    )
}

/// The study's own growth in words, for both renderers: the evidence and what helps.
pub fn study_words(s: &crate::analysis::locate::study::StudyGrowth) -> (String, &'static str) {
    // An installed package's file by its path in the package.
    let lines: Vec<&str> = s
        .lines
        .iter()
        .map(|l| {
            l.rsplit_once("site-packages/")
                .map_or(l.as_str(), |(_, p)| p)
        })
        .collect();
    let bound = match s.measured_bytes {
        Some(whole) if whole < s.per_trial.bytes => format!(
            "; the worker as a whole grew {} per trial, which bounds it (tracing counts what a trial kept, not the older memory it freed)",
            small_size(whole)
        ),
        _ => String::new(),
    };
    (
        format!(
            "the search framework's own lines keep {} more per traced trial (95% CI {}..{}; {} traced trials, confidence {:.0}%), at {}{bound}",
            small_size(s.per_trial.bytes),
            small_size(s.per_trial.low_bytes),
            small_size(s.per_trial.high_bytes),
            s.reports,
            100.0 * s.confidence,
            lines.join(", ")
        ),
        "an in-memory study keeps every trial it ran and its sampler caches what it computed from them, so this grows with the search whatever the objective does; a storage outside the worker (Optuna's RDBStorage or JournalStorage) keeps the trials out of it",
    )
}

/// A diagnosis in words, for both renderers: what is happening, the evidence, and what helps.
/// (One sentence each, so neither renderer words a mechanism on its own.)
pub fn diagnosis_words(d: &Diagnosis) -> (&'static str, String, &'static str) {
    use crate::units::size;
    match d {
        Diagnosis::CopyOnRead {
            processes,
            per_process_bytes_per_trial,
            children_share,
            rss_bytes_per_trial,
        } => (
            "copy-on-read after fork",
            format!(
                "the growth is spread over {processes} forked processes privatizing pages they inherited ({} per process per trial, {:.0}% of the growth), while resident memory stays flat ({} per trial): reading inherited Python objects writes their reference counts",
                size(*per_process_bytes_per_trial),
                100.0 * children_share,
                size(*rss_bytes_per_trial)
            ),
            "keep shared data in numpy arrays or tensors instead of lists of Python objects, start fewer worker processes, or keep them alive across epochs (persistent_workers)",
        ),
        Diagnosis::GpuTensors {
            allocated_bytes_per_trial,
            reserved_bytes_per_trial,
        } => (
            "a GPU tensor leak",
            format!(
                "PyTorch's live tensors grow {} per trial (its reserved memory {} per trial)",
                size(*allocated_bytes_per_trial),
                size(*reserved_bytes_per_trial)
            ),
            "tensors are kept from trial to trial: a list of outputs or losses not `.detach().cpu()`ed, a model or optimizer per trial never dropped; the traced lines above show where Python holds them",
        ),
        Diagnosis::GpuAllocatorCache {
            reserved_bytes_per_trial,
            allocated_bytes_per_trial,
            inactive_split_bytes,
        } => (
            "GPU allocator caching, not a tensor leak",
            format!(
                "what PyTorch's caching allocator reserves grows {} per trial while its live tensors grow {} per trial ({} of cached blocks are split)",
                size(*reserved_bytes_per_trial),
                size(*allocated_bytes_per_trial),
                size(*inactive_split_bytes)
            ),
            "it is reused, not lost: call torch.cuda.empty_cache() between trials to give it back, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True against fragmentation",
        ),
        Diagnosis::GpuOutsideTorch {
            device_bytes_per_trial,
            reserved_bytes_per_trial,
        } => (
            "GPU memory outside PyTorch's allocator",
            format!(
                "the driver reports the process's GPU memory growing {} per trial while PyTorch reserves {} per trial more",
                size(*device_bytes_per_trial),
                size(*reserved_bytes_per_trial)
            ),
            "look for CUDA contexts or libraries that allocate on their own: a new process or thread initialising CUDA per trial, cuDNN/cuBLAS workspaces, NCCL communicators, CuPy or JAX beside PyTorch",
        ),
        Diagnosis::AllocatorRetention {
            resident_bytes_per_trial,
            traced_bytes_per_trial,
            traced_peak_bytes,
        } => (
            "allocator retention",
            format!(
                "resident memory grows {} per trial while the live Python objects grow {} per trial, though each trial has {} of them alive at its peak: memory freed is not given back (malloc arenas, fragmentation)",
                size(*resident_bytes_per_trial),
                size(*traced_bytes_per_trial),
                size(*traced_peak_bytes)
            ),
            "set MALLOC_ARENA_MAX=2, call malloc_trim(0) between trials, or preload jemalloc; confirm with `memwarden replay RUN_DIR --trial ID --env MALLOC_ARENA_MAX=2 -- ...`",
        ),
    }
}

pub fn growth_rate(k: &KindFinding) -> GrowthRate {
    match (k.basis, k.per_trial, k.per_hour) {
        (Basis::Trials, Some(trial), hour) => GrowthRate::PerTrial { trial, hour },
        (_, _, Some(h)) => GrowthRate::PerHour(h),
        _ => GrowthRate::Unknown,
    }
}

pub fn parameters(f: &Findings) -> Vec<ParameterStatement<'_>> {
    f.parameters.iter().map(parameter).collect()
}

fn parameter(p: &ParameterFinding) -> ParameterStatement<'_> {
    ParameterStatement {
        what: match (&p.value, p.rho) {
            (Some(value), _) => ParameterWhat::Value {
                name: &p.name,
                value,
            },
            (None, Some(rho)) => ParameterWhat::Trend { name: &p.name, rho },
            (None, None) => ParameterWhat::Name(&p.name),
        },
        effect_bytes: p.effect_bytes,
        interval: p.effect_low_bytes.zip(p.effect_high_bytes),
        trials_with: p.trials_with,
        trials_without: p.trials_without,
        p_value: p.p_value,
    }
}

pub fn forecast(fc: &Forecast) -> ForecastStatement<'_> {
    ForecastStatement {
        outlook: match (
            fc.exhausted_in_hours,
            fc.short_window_s.zip(fc.exhausted_in_trials),
        ) {
            (None, Some((window_s, trials))) => Outlook::RunsOutInTrials {
                growth_bytes_per_trial: fc.growth_bytes_per_trial,
                available_bytes: fc.available_bytes,
                trials,
                window_s,
            },
            (Some(hours), _) => Outlook::RunsOut {
                growth_bytes_per_hour: fc.growth_bytes_per_hour,
                available_bytes: fc.available_bytes,
                hours,
                trials: fc.exhausted_in_trials,
            },
            (None, None) => Outlook::Holds {
                mem_total_bytes: fc.mem_total_bytes,
                available_bytes: fc.available_bytes,
            },
        },
        advice: &fc.advice,
        restart_rules_help: fc.restart_every_trials.is_some() || fc.max_workers.is_some(),
    }
}

mod machine;
mod run;
pub use machine::{oom, oom_words, outside_words, OomStatement, OomWorker};
pub use run::{run, Ends, RunStatement, RunVerdict};
