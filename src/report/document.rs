//! What a report is made of, and the order of its sections.

use super::{findings, policy, sections, timeline, OomKill};
use crate::analysis::Analysis;
use crate::recording::{Event, Manifest};

/// A plot the report links to.
#[derive(Debug, Clone)]
pub struct PlotRef {
    pub title: String,
    /// Relative to the report.
    pub file: String,
}

/// Everything a report says, gathered by the command.
pub struct ReportInput<'a> {
    pub manifest: &'a Manifest,
    pub events: &'a [Event],
    pub analysis: &'a Analysis,
    pub kills: &'a [OomKill],
    /// The boot id of the host writing the report: a different one means it rebooted since.
    pub current_boot_id: Option<String>,
    /// Wall-clock boot time of the recorded boot, when known, to place `dmesg` times.
    pub boot_wall_ns: Option<u64>,
    /// Files of the run directory and their sizes.
    pub data_files: Vec<(String, u64)>,
    pub plots: Vec<PlotRef>,
    /// Which memwarden wrote the report.
    pub reporter_version: String,
    /// A policy simulation of this recording (its actions are among `events`).
    pub simulation: Option<&'a crate::policy::Simulation>,
}

pub fn render(input: &ReportInput) -> String {
    let mut out = String::new();
    sections::summary(&mut out, input);
    timeline::timeline(&mut out, input);
    policy::policy(&mut out, input);
    if sections::abrupt(input) {
        sections::after_crash(&mut out, input);
    }
    findings::root_cause(&mut out, input);
    sections::memory_pattern(&mut out, input);
    findings::forecast(&mut out, input);
    sections::appendix(&mut out, input);
    out
}
