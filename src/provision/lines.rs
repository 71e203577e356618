//! Turning a byte stream into log lines.

use std::collections::VecDeque;

/// Longest line kept whole; longer runs without a newline are cut into pieces this long,
/// so binary output cannot grow the buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// Splits chunks of output into complete lines (without the `\n` or `\r\n`).
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds a chunk; returns the lines it completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                out.push(self.take());
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    out.push(self.take());
                }
            }
        }
        out
    }

    /// The unterminated remainder, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            None
        } else {
            Some(self.take())
        }
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The last `cap` lines seen.
#[derive(Debug)]
pub struct Tail {
    cap: usize,
    lines: VecDeque<String>,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            cap,
            lines: VecDeque::with_capacity(cap),
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_strips_cr() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"one\r\ntw"), vec!["one"]);
        assert_eq!(b.push(b"o\n\nthr"), vec!["two", ""]);
        assert_eq!(b.finish().as_deref(), Some("thr"));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn cuts_runaway_lines() {
        let mut b = LineBuffer::default();
        let lines = b.push(&vec![b'x'; MAX_LINE * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert_eq!(b.finish().map(|s| s.len()), Some(5));
    }

    #[test]
    fn keeps_a_utf8_character_split_between_chunks() {
        let mut b = LineBuffer::default();
        let s = "héllo\n".as_bytes();
        assert!(b.push(&s[..2]).is_empty());
        assert_eq!(b.push(&s[2..]), vec!["héllo"]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new(2);
        for l in ["a", "b", "c"] {
            t.push(l);
        }
        assert_eq!(t.lines(), vec!["b", "c"]);
    }
}
