//! Framing for append-only streams: one record per line, `CRC32HEX SP JSON LF`.
//!
//! JSON never contains a raw newline, so a reader always finds the next record after a garbled
//! one; the CRC catches torn and bit-flipped records. A final line without its newline is a torn
//! write from a crash and is simply the end of the stream.

use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;

/// Appends one framed record to `out`.
pub fn encode<T: Serialize>(record: &T, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    serde_json::to_writer(&mut *out, record)?;
    let crc = crc32fast::hash(&out[start + 9..]);
    let mut hex = [0u8; 8];
    write!(&mut hex[..], "{crc:08x}").expect("bug: 8 hex digits fit in 8 bytes");
    out[start..start + 8].copy_from_slice(&hex);
    out.push(b'\n');
    Ok(())
}

/// What a decode pass met besides good records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    pub records: usize,
    /// Complete lines whose checksum or content was wrong; skipped.
    pub garbled: usize,
    /// Bytes after the last newline: a record torn by a crash; ignored.
    pub torn_tail_bytes: usize,
}

/// Decodes every intact record of a stream, skipping damaged ones.
pub fn decode_all<T: DeserializeOwned>(bytes: &[u8]) -> (Vec<T>, DecodeStats) {
    match decode_from(bytes) {
        Ok(decoded) => decoded,
        Err(_) => unreachable!("bug: reading from memory cannot fail"),
    }
}

/// As `decode_all`, a line at a time from `reader`: a long run's events are never all in
/// memory twice, as bytes and as records (issue 35: 400 MB of events.log for a million trials).
pub fn decode_from<T: DeserializeOwned>(
    mut reader: impl std::io::BufRead,
) -> std::io::Result<(Vec<T>, DecodeStats)> {
    let mut stats = DecodeStats::default();
    let mut records = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            // Bytes after the last newline: the torn tail (the popped byte was one of them).
            stats.torn_tail_bytes = line.len() + 1;
            break;
        }
        match decode_line(&line) {
            Some(record) => records.push(record),
            None => stats.garbled += 1,
        }
    }
    stats.records = records.len();
    Ok((records, stats))
}

fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Option<T> {
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let payload = &line[9..];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(values: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            encode(v, &mut out).expect("encode");
        }
        out
    }

    #[test]
    fn round_trip() {
        let (values, stats) = decode_all::<u32>(&stream(&[1, 22, 333]));
        assert_eq!(values, vec![1, 22, 333]);
        assert_eq!(
            stats,
            DecodeStats {
                records: 3,
                garbled: 0,
                torn_tail_bytes: 0
            }
        );
    }

    #[test]
    fn every_truncation_reads_a_prefix() {
        let bytes = stream(&[10, 20, 30, 40]);
        for cut in 0..bytes.len() {
            let (values, stats) = decode_all::<u32>(&bytes[..cut]);
            assert_eq!(stats.garbled, 0, "cut at {cut}");
            assert_eq!(values[..], [10, 20, 30, 40][..values.len()], "cut at {cut}");
            // The torn tail is every byte after the last newline, however the file is read
            // (here through a buffer of 3 bytes, so lines span many reads).
            let after_newline = bytes[..cut].iter().rev().take_while(|&&b| b != b'\n');
            assert_eq!(stats.torn_tail_bytes, after_newline.count(), "cut at {cut}");
            let small = std::io::BufReader::with_capacity(3, &bytes[..cut]);
            let (streamed, streamed_stats) = decode_from::<u32>(small).expect("reads");
            assert_eq!((streamed, streamed_stats), (values, stats), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_loses_one_record_only() {
        let bytes = stream(&[10, 20, 30]);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            let (values, stats) = decode_all::<u32>(&damaged);
            // A flipped newline merges two lines into one bad line: two records lost at most.
            assert!(!values.is_empty(), "flip at {i}: {values:?}");
            let noticed = stats.garbled >= 1 || stats.torn_tail_bytes > 0;
            assert!(noticed || values.len() == 3, "flip at {i} undetected");
            assert!(
                values.iter().all(|v| [10, 20, 30].contains(v)),
                "flip at {i}: {values:?}"
            );
        }
    }

    #[test]
    fn garbage_between_records_is_skipped() {
        let mut bytes = stream(&[1]);
        bytes.extend_from_slice(b"\x00\xffnot a record\n");
        bytes.extend_from_slice(&stream(&[2]));
        let (values, stats) = decode_all::<u32>(&bytes);
        assert_eq!(values, vec![1, 2]);
        assert_eq!(stats.garbled, 1);
    }
}
