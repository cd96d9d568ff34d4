//! One traced line's retained bytes in one process, report by report: what `sites` fits per
//! line and `study` sums over the search framework's own lines.

/// A traced line: its file and line number.
pub(super) type SiteKey = (String, u32);

pub(super) struct Series<'a> {
    pub(super) pid: i32,
    /// Per report of the process, the site's retained bytes (summed increments).
    pub(super) retained: Vec<f64>,
    /// Per report, the increment and its trial's parameters.
    pub(super) increments: Vec<(f64, &'a crate::recording::ParamMap)>,
    pub(super) last: Option<&'a crate::recording::PythonSite>,
}
