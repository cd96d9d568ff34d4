//! The measured values findings are made of, and the parts of analysis that measure them take
//! (levels, parameters, sites, holders, mappings): a rate with its interval, a trial's level
//! triple, a parameter value's effect, a mapping's growth. They sit below `findings`, which
//! composes them, so that the parts that measure need not reach up into it.

use serde::{Deserialize, Serialize};

/// A rate with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub bytes: f64,
    pub low_bytes: f64,
    pub high_bytes: f64,
}

/// A fitted trend's slope and its interval.
impl From<&crate::stats::Trend> for Rate {
    fn from(t: &crate::stats::Trend) -> Self {
        Self {
            bytes: t.slope,
            low_bytes: t.slope_low,
            high_bytes: t.slope_high,
        }
    }
}

/// Rates of parts that add up (processes at one line, a study's processes).
impl std::ops::AddAssign for Rate {
    fn add_assign(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.low_bytes += other.low_bytes;
        self.high_bytes += other.high_bytes;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingCategory {
    Heap,
    AnonymousRegions,
    GlibcArenas,
    SmallAnonymous,
    SharedMemory,
    GpuDriver,
    File,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingFinding {
    pub category: MappingCategory,
    /// `[heap]`, a path, or a description such as `anonymous regions`.
    pub name: String,
    pub growth_bytes: f64,
    /// Regions present at the last snapshot but not the first (negative: fewer).
    pub regions_added: i64,
    /// The typical size of the added regions.
    pub region_bytes: Option<f64>,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterFinding {
    pub name: String,
    /// For a categorical parameter, the value whose trials differ; `None` for a numeric trend.
    pub value: Option<String>,
    /// Median retained growth per trial with this value (or per unit, for a trend) ...
    pub with_bytes: f64,
    /// ... and without it.
    pub without_bytes: f64,
    /// Extra retained growth per trial that goes with the value (Hodges–Lehmann shift for a
    /// value; difference of medians above and below the median for a numeric trend) ...
    pub effect_bytes: f64,
    /// ... and its 95% interval (values only).
    pub effect_low_bytes: Option<f64>,
    pub effect_high_bytes: Option<f64>,
    pub trials_with: usize,
    pub trials_without: usize,
    /// Spearman's rho, for numeric parameters.
    pub rho: Option<f64>,
    /// Bonferroni-adjusted p-value over all values tested.
    pub p_value: f64,
    pub significant: bool,
}

/// Baseline, peak and retained of one kind in one trial (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelTriple {
    pub baseline: Option<f64>,
    pub peak: Option<f64>,
    pub retained: Option<f64>,
}
