//! Where a worker's growth is: the mappings that grew, the traced lines that kept it, the holders of growing tensors, the parameter values that go with it, and the search framework's own growth.

pub mod holders;
pub(crate) mod location;
pub(crate) mod params;
pub(crate) mod site_series;
pub mod sites;
pub mod study;
