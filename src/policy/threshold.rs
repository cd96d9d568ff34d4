//! A memory threshold as the policy file and the command line write it: a size (`2GiB`) or a
//! share of the budget (`80%`).

use crate::units::parse_size;

/// A memory threshold: a size, or a share of the budget (the whole machine when no budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    pub fn resolve(self, whole_bytes: u64) -> u64 {
        match self {
            Threshold::Bytes(bytes) => bytes,
            Threshold::Percent(percent) => (whole_bytes as f64 * percent / 100.0) as u64,
        }
    }

    /// `a` is always below `b`, whatever the whole: both in the same unit and smaller.
    pub(super) fn surely_below(self, other: Threshold) -> Option<bool> {
        match (self, other) {
            (Threshold::Bytes(a), Threshold::Bytes(b)) => Some(a < b),
            (Threshold::Percent(a), Threshold::Percent(b)) => Some(a < b),
            _ => None,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Bytes(bytes) => write!(f, "{}", crate::units::size(*bytes as f64)),
            Threshold::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(number) = text.trim().strip_suffix('%') {
            let percent: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage"))?;
            if !(percent > 0.0 && percent < 100.0) {
                return Err(format!(
                    "{text:?}: a percentage must be above 0 and below 100"
                ));
            }
            return Ok(Threshold::Percent(percent));
        }
        parse_size(text).map(Threshold::Bytes)
    }
}
