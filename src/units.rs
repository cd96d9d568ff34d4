//! Quantities in memwarden's words: sizes, durations and clock times, parsed from what people
//! type (`--interval 100ms`, `max_worker_pss = "12GiB"`, `--max-growth 1MiB/trial`) and printed
//! the one way every output uses (`512.0 MiB`, `3.21 GiB`, `4m05s`, `18:31:02`). Every module
//! that reads or writes a quantity comes here, so the CLI, the policy file, analysis and the
//! reports can never disagree on what `1M` means or how a size is shown. Pure functions.

use std::time::Duration;

pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * MIB;

/// `512.0 MiB`, `3.21 GiB`.
pub fn size(bytes: f64) -> String {
    if bytes.abs() >= GIB {
        format!("{:.2} GiB", bytes / GIB)
    } else {
        format!("{:.1} MiB", bytes / MIB)
    }
}

/// `45s`, `4m05s`, `12h00m`: whole seconds, rounded.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `18:31:02`: the UTC clock time of a wall-clock instant (ns since the epoch).
pub fn clock_utc(wall_ns: u64) -> String {
    let wall = std::time::UNIX_EPOCH + Duration::from_nanos(wall_ns);
    let stamp = humantime::format_rfc3339_seconds(wall).to_string();
    stamp.get(11..19).unwrap_or(&stamp).to_string()
}

/// Parses a byte size: `512KiB`, `1.5 GiB`, `100MB`, `4096` (bytes).
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. 1MiB, 512KiB, 2GiB)"))?;
    let factor = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" => MIB,
        "GiB" | "G" => GIB,
        "TiB" | "T" => 1024f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok(number * factor)
}

/// A size of at least one byte, with a unit: `24GiB`, `512MiB` (a limit or a threshold).
pub fn parse_size(text: &str) -> Result<u64, String> {
    if text.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "{text:?} has no unit: write e.g. \"512MiB\", \"24GiB\" (or \"10%\" for a threshold)"
        ));
    }
    let bytes = parse_bytes(text)?;
    if !(bytes >= 1.0 && bytes < 2f64.powi(60)) {
        return Err(format!("{text:?}: a size must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// A duration: `100ms`, `5s`, `10m`, `12h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 100ms, 5s, 10m, 12h)"))
}

/// A positive duration: `10s`, `5m`, `12h`.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?}: the duration must be above zero"));
    }
    Ok(duration)
}
