//! memwarden's own lines on stderr, and the live view drawn below them on a terminal. Every
//! line the harness says goes through [`say`], so none lands inside the view: indicatif clears
//! the view, prints the line above it and draws the view again. Without a view (no terminal,
//! `--quiet`, another command) a line is a plain `eprintln!`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// The view being drawn, if any: one at a time per process.
static VIEW: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Prints `memwarden: MESSAGE` on stderr, above the live view when one is drawn.
pub fn say(message: impl std::fmt::Display) {
    let line = format!("memwarden: {message}");
    let view = VIEW.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match view {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// A block of lines at the bottom of the terminal, redrawn in place.
pub struct View {
    bar: ProgressBar,
}

impl View {
    /// A view on stderr when it is a terminal that can move its cursor; `None` otherwise.
    pub fn start() -> Option<Self> {
        let dumb = std::env::var_os("TERM").is_none_or(|term| term == "dumb");
        if !std::io::stderr().is_terminal() || dumb {
            return None;
        }
        // Four redraws a second at most, whatever the caller asks.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(ProgressStyle::with_template("{msg}").ok()?);
        *VIEW.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        Some(Self { bar })
    }

    /// Shows `frame`, each line cut to the terminal's width: a wrapped line would scroll the
    /// view instead of redrawing it.
    pub fn show(&self, frame: String) {
        let width = console::Term::stderr()
            .size_checked()
            .map_or(usize::MAX, |(_, columns)| usize::from(columns).max(20));
        let lines: Vec<_> = frame
            .lines()
            .map(|line| console::truncate_str(line, width - 1, "…"))
            .collect();
        self.bar.set_message(lines.join("\n"));
    }
}

impl Drop for View {
    /// The last frame stays on screen; lines said afterwards print below it.
    fn drop(&mut self) {
        *VIEW.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.bar.finish();
    }
}
