//! Splitting a byte stream into lines with a hard bound on memory: a line longer than
//! `max_line_bytes` is cut, and the rest of it is counted and dropped until its newline. A worker
//! printing huge, binary or non-UTF-8 output therefore cannot grow the harness.

pub struct LineSplitter {
    max_line_bytes: usize,
    partial: Vec<u8>,
    /// Bytes of the current line dropped past the bound.
    dropped: usize,
}

/// One complete line, possibly cut.
pub struct Line<'a> {
    pub bytes: &'a [u8],
    pub dropped_bytes: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            partial: Vec::new(),
            dropped: 0,
        }
    }

    /// Feeds a chunk; calls `on_line` for each line it completes.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(Line<'_>)) {
        while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..newline], &chunk[newline + 1..]);
            if self.partial.is_empty() && self.dropped == 0 && head.len() <= self.max_line_bytes {
                on_line(Line {
                    bytes: strip_cr(head),
                    dropped_bytes: 0,
                });
            } else {
                self.keep(head);
                on_line(Line {
                    bytes: strip_cr(&self.partial),
                    dropped_bytes: self.dropped,
                });
                self.partial.clear();
                self.dropped = 0;
            }
            chunk = rest;
        }
        self.keep(chunk);
    }

    /// The unterminated last line at end of stream, if any.
    pub fn finish(&mut self, mut on_line: impl FnMut(Line<'_>)) {
        if !self.partial.is_empty() || self.dropped > 0 {
            on_line(Line {
                bytes: &self.partial,
                dropped_bytes: self.dropped,
            });
            self.partial.clear();
            self.dropped = 0;
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes - self.partial.len();
        let take = bytes.len().min(room);
        self.partial.extend_from_slice(&bytes[..take]);
        self.dropped += bytes.len() - take;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push((l.bytes.to_vec(), l.dropped_bytes)));
        }
        s.finish(|l| out.push((l.bytes.to_vec(), l.dropped_bytes)));
        out
    }

    #[test]
    fn lines_across_chunks() {
        let out = split(100, &[b"ab", b"c\nde\r\n", b"f"]);
        assert_eq!(
            out,
            vec![
                (b"abc".to_vec(), 0),
                (b"de".to_vec(), 0),
                (b"f".to_vec(), 0)
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_and_counted() {
        let big = vec![b'x'; 10_000];
        let out = split(8, &[&big, &big, b"\nok\n"]);
        assert_eq!(
            out,
            vec![(b"xxxxxxxx".to_vec(), 19_992), (b"ok".to_vec(), 0)]
        );
        let out = split(4, &[b"123456\n"]);
        assert_eq!(out, vec![(b"1234".to_vec(), 2)]);
    }

    #[test]
    fn binary_is_just_bytes() {
        let out = split(16, &[&[0xff, 0x00, 0xfe, b'\n']]);
        assert_eq!(out, vec![(vec![0xff, 0x00, 0xfe], 0)]);
    }
}
