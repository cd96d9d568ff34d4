//! A series reduced to at most a few hundred time buckets (minimum, maximum and last value per
//! kind), whatever the recording's length: the widths double as the series grows. Minima per
//! bucket follow the retained level under transient spikes, which is what a time-based verdict
//! (no trials seen) fits; reports plot the buckets.

/// What each value slot of the run-wide timelines holds.
pub mod slot {
    /// The system timeline (`SystemSummary::timeline`): available memory ...
    pub const AVAILABLE: usize = 0;
    /// ... and memory PSI full avg10.
    pub const PSI_FULL: usize = 1;
    /// A GPU device's timeline: memory used ...
    pub const DEVICE_USED: usize = 0;
    /// ... and the device's total.
    pub const DEVICE_TOTAL: usize = 1;
}

use crate::analysis::kind::Values;

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The first sample's time in the bucket.
    pub t_ns: u64,
    pub min: Values,
    pub max: Values,
    pub last: Values,
    pub samples: u32,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    width_ns: u64,
    max_buckets: usize,
    buckets: Vec<(u64, Bucket)>,
}

impl Timeline {
    pub fn new(initial_width_ns: u64, max_buckets: usize) -> Self {
        Self {
            width_ns: initial_width_ns.max(1),
            max_buckets: max_buckets.max(2),
            buckets: Vec::new(),
        }
    }

    /// Samples must come in time order.
    pub fn push(&mut self, t_ns: u64, values: &Values) {
        let index = t_ns / self.width_ns;
        match self.buckets.last_mut() {
            Some((last_index, bucket)) if *last_index == index => merge(bucket, values),
            _ => {
                self.buckets.push((
                    index,
                    Bucket {
                        t_ns,
                        min: *values,
                        max: *values,
                        last: *values,
                        samples: 1,
                    },
                ));
                if self.buckets.len() > self.max_buckets {
                    self.coarsen();
                }
            }
        }
    }

    fn coarsen(&mut self) {
        self.width_ns *= 2;
        let mut merged: Vec<(u64, Bucket)> = Vec::with_capacity(self.buckets.len() / 2 + 1);
        for (index, bucket) in self.buckets.drain(..) {
            let index = index / 2;
            match merged.last_mut() {
                Some((last_index, last)) if *last_index == index => {
                    for k in 0..last.min.len() {
                        last.min[k] = pick(last.min[k], bucket.min[k], f64::min);
                        last.max[k] = pick(last.max[k], bucket.max[k], f64::max);
                        last.last[k] = bucket.last[k].or(last.last[k]);
                    }
                    last.samples += bucket.samples;
                }
                _ => merged.push((index, bucket)),
            }
        }
        self.buckets = merged;
    }

    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().map(|(_, b)| b)
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn merge(bucket: &mut Bucket, values: &Values) {
    for (k, value) in values.iter().enumerate() {
        bucket.min[k] = pick(bucket.min[k], *value, f64::min);
        bucket.max[k] = pick(bucket.max[k], *value, f64::max);
        bucket.last[k] = value.or(bucket.last[k]);
    }
    bucket.samples += 1;
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_extremes() {
        let mut timeline = Timeline::new(10, 100);
        for t in 0..100_000u64 {
            let mut values: Values = Default::default();
            values[0] = Some(if t == 54_321 { 1e9 } else { t as f64 });
            timeline.push(t * 10, &values);
        }
        assert!(timeline.len() <= 100 && timeline.len() > 50);
        let max = timeline
            .buckets()
            .filter_map(|b| b.max[0])
            .fold(0.0, f64::max);
        assert_eq!(max, 1e9);
        let first = timeline.buckets().next().expect("bucket");
        assert_eq!((first.t_ns, first.min[0]), (0, Some(0.0)));
        let samples: u32 = timeline.buckets().map(|b| b.samples).sum();
        assert_eq!(samples, 100_000);
    }
}
