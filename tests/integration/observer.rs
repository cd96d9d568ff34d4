//! What watching costs the workers: a process whose reads hold its memory map too long is read
//! only in the gaps after its trials, within its share of the time, and the run says so.

use crate::util::*;

#[test]
fn a_costly_process_is_read_only_in_the_gaps_after_trials_within_its_allowance() {
    let temp = tempdir();
    let dir = run_dir(&temp);
    // Every read counts as costly (over 100 µs), and reads may hold the map for 0.01% of the
    // time. The allowance starts with one read (or 1 ms, whichever is more) and refills 0.4 ms
    // over the 4 s run, so however fast this machine walks a 128 MiB map (0.6 ms here, 2-3 ms
    // on slower ones), no more than three of the 16 trial ends can be read. At 0.2% the
    // allowance held 28 ms, and a fast machine read 11 of 16.
    let out = run_fixture(
        &dir,
        "--max-stall 100us --max-hold 0.01",
        "--trials 16 --trial-ms 150 --gap-ms 100 --work-mib 128 --work-passes 0",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = export(&dir, "events");
    let (kind, t, trial) = (
        events.column("kind"),
        events.column("t_ns"),
        events.column("trial"),
    );
    // Trial windows: from each start to its end.
    let mut windows = Vec::new();
    let mut started = std::collections::BTreeMap::new();
    for row in &events.rows {
        let at: u64 = row[t].parse().expect("t_ns");
        match row[kind].as_str() {
            "trial_start" => {
                started.insert(row[trial].clone(), at);
            }
            "trial_end" => {
                if let Some(start) = started.remove(&row[trial]) {
                    windows.push((start, at));
                }
            }
            _ => {}
        }
    }
    assert_eq!(windows.len(), 16, "{stderr}");
    let samples = export(&dir, "samples");
    let reads: Vec<u64> = samples
        .rows
        .iter()
        .filter(|row| !row[samples.column("pss")].is_empty())
        .map(|row| row[samples.column("t_ns")].parse().expect("t_ns"))
        .collect();
    let inside: Vec<u64> = reads
        .iter()
        .copied()
        .filter(|&r| windows.iter().any(|&(start, end)| start < r && r < end))
        .collect();
    assert!(inside.is_empty(), "PSS read inside trials at {inside:?}");
    // The allowance's one read may go before the first trial (when the worker starts) or at a
    // trial's end, whichever comes first: counted over the whole run.
    assert!(
        (1..=3).contains(&reads.len()),
        "{} reads: more than the allowance gives, or none",
        reads.len()
    );
    // Mappings only at trial ends, never as a trial starts.
    let smaps = export(&dir, "smaps");
    let boundaries: std::collections::BTreeSet<&str> = smaps
        .rows
        .iter()
        .map(|row| row[smaps.column("boundary")].as_str())
        .collect();
    assert_eq!(
        boundaries.into_iter().collect::<Vec<_>>(),
        vec!["trial_end"]
    );
    // The CSV helper splits at every comma: a note's detail is the rest of its row.
    let notes: Vec<String> = events
        .rows
        .iter()
        .filter(|row| row[kind] == "note")
        .map(|row| row[events.column("detail")..].join(","))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("read only in the gaps after its trials")),
        "{notes:?}"
    );
    let put_off = notes
        .iter()
        .find(|n| n.contains("trial ends, less often than once per trial"))
        .unwrap_or_else(|| panic!("no note of reads put off: {notes:?}"));
    assert!(
        put_off.contains("of its worker's 16 trial ends"),
        "{put_off}"
    );
}
