//! A run opened from a published layout (`publish`'s Parquet tables partitioned by host and
//! run) rather than from its run directory: the same `Recording`, read from other files.

use super::*;
use crate::recording::layout::columns;

impl Recording {
    /// The manifest and events from the run's rows in `runs` and `events` (each keeps the
    /// original as JSON), the samples from its partitions.
    pub(super) fn open_published(
        dir: &Path,
        dest: PathBuf,
        key: RunKey,
    ) -> Result<Self, RecordingError> {
        let runs = key.partition(&dest, "runs").join(file_name(1));
        if !runs.exists() {
            return Err(RecordingError::NotARun(dir.to_path_buf()));
        }
        let json = |path: &Path, column: &str| -> Result<Vec<String>, RecordingError> {
            let table = read_parquet(path, Some(&[column]))?;
            let values = table
                .column(column)
                .and_then(|c| c.str().cloned())
                .map_err(|cause| RecordingError::Table {
                    path: path.to_path_buf(),
                    cause,
                })?;
            Ok(values.iter().flatten().map(str::to_string).collect())
        };
        let manifest_json = json(&runs, columns::MANIFEST_JSON)?;
        let manifest: Manifest = manifest_json
            .first()
            .map(|text| serde_json::from_str(text))
            .unwrap_or_else(|| serde_json::from_str(""))
            .map_err(|cause| RecordingError::BadManifest {
                path: runs.clone(),
                cause,
            })?;
        manifest.check_version(dir)?;
        let events_path = key.partition(&dest, "events").join(file_name(1));
        let mut events = Vec::new();
        let mut garbled = 0;
        if events_path.exists() {
            for text in json(&events_path, columns::RECORD)? {
                match serde_json::from_str::<Event>(&text) {
                    Ok(event) => events.push(event),
                    Err(_) => garbled += 1,
                }
            }
        }
        events.sort_by_key(|e| e.t_ns);
        let recording = Self {
            dir: dir.to_path_buf(),
            manifest,
            events,
            stats: Default::default(),
            source: Source::Published { dest, key },
        };
        // The damage reading the run directory skipped when it was published.
        let skipped = read_parquet(
            &runs,
            Some(&[columns::DAMAGED_RECORDS, columns::TORN_TAIL_BYTES]),
        )?;
        let first = |name: &str| {
            skipped
                .column(name)
                .ok()
                .and_then(|c| c.u64().ok()?.get(0))
                .unwrap_or(0) as usize
        };
        recording.count(frame::DecodeStats {
            garbled: garbled + first(columns::DAMAGED_RECORDS),
            torn_tail_bytes: first(columns::TORN_TAIL_BYTES),
            ..Default::default()
        });
        Ok(recording)
    }
}
