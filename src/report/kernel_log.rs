//! OOM-killer kills from kernel log text, as `dmesg`, `dmesg -T`, `journalctl -k` and
//! `journalctl -k -o short-iso` print it. Pure: text in, kills out. A kill's time is either
//! seconds since boot (plain `dmesg`) or a wall-clock time; the report places each on the run's
//! clock as well as it can and says when it cannot.

use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq)]
pub enum KernelTime {
    /// `[12345.678901]`: seconds since boot.
    SinceBoot(f64),
    /// Wall clock, nanoseconds since the Unix epoch (UTC assumed where the log gives no zone).
    Wall(u64),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OomKill {
    pub time: KernelTime,
    pub pid: i32,
    pub name: String,
    pub anon_rss_bytes: Option<u64>,
    /// `Memory cgroup out of memory` rather than the whole machine.
    pub cgroup: bool,
}

static KILLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<cgroup>Memory cgroup out of memory: )?(?:Out of memory: )?Kill(?:ed)? process (?P<pid>\d+) \((?P<name>[^)]*)\)(?:.*?anon-rss:(?P<anon>\d+)kB)?")
        .expect("bug: the OOM pattern is valid")
});
static SINCE_BOOT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[\s*(?P<s>\d+\.\d+)\]").expect("bug: the dmesg time pattern is valid")
});
/// `[Sun Nov 22 18:31:02 2026]` (dmesg -T).
static DMESG_T: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[\w{3} (?P<mon>\w{3}) +(?P<day>\d+) (?P<hms>\d\d:\d\d:\d\d) (?P<year>\d{4})\]")
        .expect("bug: the dmesg -T pattern is valid")
});
/// `Nov 22 18:31:02 host kernel:` (journalctl -k).
static JOURNAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<mon>\w{3}) +(?P<day>\d+) (?P<hms>\d\d:\d\d:\d\d) \S+ kernel:")
        .expect("bug: the journal pattern is valid")
});
/// `2026-11-22T18:31:02+0000 host kernel:` (journalctl -k -o short-iso).
static ISO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<date>\d{4}-\d\d-\d\d)T(?P<hms>\d\d:\d\d:\d\d)(?:[.,]\d+)?(?P<zone>Z|[+-]\d\d:?\d\d)? \S+ kernel:")
        .expect("bug: the ISO journal pattern is valid")
});

/// Every kill in the text. `year` completes journal dates, which carry none.
pub fn oom_kills(text: &str, year: i32) -> Vec<OomKill> {
    text.lines()
        .filter_map(|line| {
            let caps = KILLED.captures(line)?;
            Some(OomKill {
                time: time_of(line, year),
                pid: caps["pid"].parse().ok()?,
                name: caps["name"].to_string(),
                anon_rss_bytes: caps
                    .name("anon")
                    .and_then(|a| a.as_str().parse::<u64>().ok())
                    .map(|kib| kib * 1024),
                cgroup: caps.name("cgroup").is_some(),
            })
        })
        .collect()
}

fn time_of(line: &str, year: i32) -> KernelTime {
    if let Some(c) = SINCE_BOOT.captures(line) {
        return c["s"]
            .parse()
            .map_or(KernelTime::Unknown, KernelTime::SinceBoot);
    }
    let wall = if let Some(c) = DMESG_T.captures(line) {
        civil_ns(
            c["year"].parse().ok(),
            month(&c["mon"]),
            c["day"].parse().ok(),
            &c["hms"],
            0,
        )
    } else if let Some(c) = ISO.captures(line) {
        let mut date = c["date"].split('-').map(|p| p.parse::<i64>().ok());
        let (y, m, d) = (
            date.next().flatten(),
            date.next().flatten(),
            date.next().flatten(),
        );
        let offset = c.name("zone").map_or(0, |z| zone_seconds(z.as_str()));
        civil_ns(
            y.map(|y| y as i32),
            m.map(|m| m as u32),
            d.map(|d| d as u32),
            &c["hms"],
            offset,
        )
    } else if let Some(c) = JOURNAL.captures(line) {
        civil_ns(
            Some(year),
            month(&c["mon"]),
            c["day"].parse().ok(),
            &c["hms"],
            0,
        )
    } else {
        None
    };
    wall.map_or(KernelTime::Unknown, KernelTime::Wall)
}

fn month(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

fn zone_seconds(zone: &str) -> i64 {
    if zone == "Z" {
        return 0;
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone.chars().filter(char::is_ascii_digit).collect();
    let hours: i64 = digits.get(..2).and_then(|h| h.parse().ok()).unwrap_or(0);
    let minutes: i64 = digits.get(2..4).and_then(|m| m.parse().ok()).unwrap_or(0);
    sign * (hours * 3600 + minutes * 60)
}

/// Nanoseconds since the epoch of a civil UTC date and time, minus the zone's offset (days from
/// civil: Howard Hinnant's algorithm). `None` for a field out of its range, or a time before
/// 1970 or past what nanoseconds in a u64 hold (the year 2554): a garbled line has no time.
pub(super) fn civil_ns(
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    hms: &str,
    offset_s: i64,
) -> Option<u64> {
    let (year, month, day) = (year? as i64, month? as i64, day? as i64);
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset_s;
    u64::try_from(seconds).ok()?.checked_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1_000_000_000;
    /// 2026-11-22T18:31:02Z
    const T: u64 = 1_795_372_262 * NS;

    /// Found by tests/integration/parsers.rs: a worker log line dated 9999 overflowed the
    /// nanoseconds (a panic in debug builds, a wrong time in release).
    #[test]
    fn dates_past_2554_or_out_of_range_have_no_time() {
        assert_eq!(
            civil_ns(Some(9999), Some(12), Some(31), "23:59:59", 0),
            None
        );
        assert_eq!(civil_ns(Some(2026), Some(13), Some(1), "00:00:00", 0), None);
        assert_eq!(
            civil_ns(Some(2026), Some(11), Some(22), "25:00:00", 0),
            None
        );
        assert_eq!(
            civil_ns(Some(2026), Some(11), Some(22), "18:31:02", 0),
            Some(T)
        );
        let log = "[I 9999-99-99 99:99:99,999] Trial 0 finished with value: 1.0 and parameters: {'x': 1}. Best is trial 0 with value: 1.0.";
        assert_eq!(super::super::worker_log::first_time_ns(log), None);
    }

    #[test]
    fn dmesg_and_journal_formats() {
        let text = std::fs::read_to_string("fixtures/kernel-log/oom.dmesg").expect("fixture");
        let kills = oom_kills(&text, 2026);
        assert_eq!(kills.len(), 1, "{kills:?}");
        assert_eq!(kills[0].pid, 4242);
        assert_eq!(kills[0].name, "python");
        assert_eq!(kills[0].anon_rss_bytes, Some(15_728_640 * 1024));
        assert_eq!(kills[0].time, KernelTime::SinceBoot(86_412.345_678));

        let text = std::fs::read_to_string("fixtures/kernel-log/oom.journal").expect("fixture");
        let kills = oom_kills(&text, 2026);
        assert_eq!(kills.len(), 2, "{kills:?}");
        assert_eq!(kills[0].time, KernelTime::Wall(T));
        assert!(kills[1].cgroup);
    }

    #[test]
    fn wall_clock_forms() {
        assert_eq!(
            time_of("[Sun Nov 22 18:31:02 2026] Out of memory", 0),
            KernelTime::Wall(T)
        );
        assert_eq!(
            time_of("2026-11-22T19:31:02+0100 box kernel: Out of memory", 0),
            KernelTime::Wall(T)
        );
        assert_eq!(time_of("no time here", 2026), KernelTime::Unknown);
    }
}
