//! Columns of a recording's frames copied out as plain values, the way every part of loading
//! reads them.

use crate::frames::prelude::*;
use crate::recording::columns as col;

/// Total and available memory per row as the workers had them: within the memory cgroup's
/// limit where one was recorded (`recording::within_limit`), else the host's.
pub fn effective_memory(df: &DataFrame) -> PolarsResult<Vec<Option<(u64, u64)>>> {
    let (total, available) = (
        u64_values(df, col::MEM_TOTAL_BYTES)?,
        u64_values(df, col::MEM_AVAILABLE_BYTES)?,
    );
    let optional = |name| optional_u64_values(df, name);
    let (limit, working_set) = (
        optional(col::CGROUP_LIMIT_BYTES)?,
        optional(col::CGROUP_WORKING_SET_BYTES)?,
    );
    Ok((0..df.height())
        .map(|i| {
            let (total, available) = (total[i]?, available[i]?);
            Some(crate::recording::within_limit(
                total,
                available,
                limit[i],
                working_set[i],
            ))
        })
        .collect())
}

/// A column that recordings made before it was added lack: all `None` there.
pub fn optional_u64_values(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<u64>>> {
    match df.column(name) {
        Ok(_) => u64_values(df, name),
        Err(_) => Ok(vec![None; df.height()]),
    }
}

pub fn u64_values(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<u64>>> {
    Ok(option_values(
        df.column(name)?.cast(&DataType::UInt64)?.u64()?,
    ))
}

/// A numeric column's values, copied out chunk by chunk with their validity: polars' per-element
/// `Option` iterator cost several times as much per row, and analysis reads millions of rows.
pub fn option_values<T: PolarsNumericType>(column: &ChunkedArray<T>) -> Vec<Option<T::Native>> {
    let mut values = Vec::with_capacity(column.len());
    for chunk in column.downcast_iter() {
        let chunk_values = chunk.values().iter().copied();
        match chunk.validity().filter(|valid| valid.unset_bits() > 0) {
            Some(valid) => values.extend(
                chunk_values
                    .zip(valid.iter())
                    .map(|(value, ok)| ok.then_some(value)),
            ),
            None => values.extend(chunk_values.map(Some)),
        }
    }
    values
}
