//! The upstream SSE parser: raw bytes in, one `data` payload per event out, with the line rules
//! of the HTML event-stream format (LF, CRLF or CR endings, even split between reads; comments;
//! a leading BOM; `data` lines joined with newlines). Other fields are not used upstream and are
//! skipped. Buffers are reused, so a steady stream allocates nothing per event. A line (with
//! the data lines of its event before it) longer than [`MAX_LINE`] is a protocol error rather
//! than a buffer that grows for as long as the upstream sends.

use crate::upstream::UpstreamError;

/// The longest line, counted with the data lines of the event it belongs to, that is read. A
/// real event is a few KiB at most (a search result list, a long cumulative answer).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Incremental parser: [`push`](Self::push) bytes as they arrive, then take events with
/// [`next_data`](Self::next_data) until it returns `None`.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes received and not yet parsed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// The `data` of the event being read, each line followed by `\n` (so it is empty
    /// until a `data` line came).
    data: Vec<u8>,
    /// The last event was handed out: its data is cleared on the next call.
    dispatched: bool,
    /// The last line ended with CR: an LF right after it belongs to the same line break.
    after_cr: bool,
    /// Past the first bytes (where a BOM is dropped).
    started: bool,
    /// Where data with invalid UTF-8 is made readable (replacement characters).
    lossy: String,
    /// Bytes received since the last line break: the line still being received.
    partial: usize,
}

impl SseParser {
    /// Adds received bytes; an error once a line (with its event's data so far) is longer
    /// than [`MAX_LINE`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        match memchr::memrchr2(b'\n', b'\r', bytes) {
            Some(i) => self.partial = bytes.len() - i - 1,
            None => self.partial += bytes.len(),
        }
        let data = if self.dispatched { 0 } else { self.data.len() };
        if self.partial + data > MAX_LINE {
            return Err(UpstreamError::Transient(format!(
                "protocol error: an upstream event line is longer than {} MiB",
                MAX_LINE >> 20
            )));
        }
        self.append(bytes);
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return;
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                self.pos = BOM.len();
            }
        }
    }

    /// Ends the input: a last line without its line break, and a last event without its blank
    /// line, still count.
    pub fn finish(&mut self) {
        self.started = true;
        self.partial = 0;
        self.append(b"\n\n");
    }

    /// The data of the next complete event, if one has arrived.
    pub fn next_data(&mut self) -> Option<&str> {
        if self.dispatched {
            self.dispatched = false;
            self.data.clear();
        }
        if !self.started {
            return None;
        }
        loop {
            let rest = &self.buf[self.pos..];
            if self.after_cr {
                let &first = rest.first()?;
                self.after_cr = false;
                if first == b'\n' {
                    self.pos += 1;
                    continue;
                }
            }
            let end = memchr::memchr2(b'\n', b'\r', rest)?;
            let line_start = self.pos;
            self.after_cr = rest[end] == b'\r';
            self.pos += end + 1;
            if end == 0 {
                if !self.data.is_empty() {
                    self.dispatched = true;
                    return Some(self.take_data());
                }
                continue;
            }
            self.line(line_start, line_start + end);
        }
    }

    /// One non-empty line, `buf[start..end]`.
    fn line(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[..0]),
        };
        if field == b"data" {
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
        }
    }

    /// The event's data without its final newline.
    fn take_data(&mut self) -> &str {
        let data = &self.data[..self.data.len() - 1];
        let lossy = &mut self.lossy;
        std::str::from_utf8(data).unwrap_or_else(|_| {
            *lossy = String::from_utf8_lossy(data).into_owned();
            lossy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_LINE, SseParser};

    /// Every event of `input` fed in pieces of `step` bytes, then ended.
    fn events(input: &[u8], step: usize) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            p.push(piece).unwrap();
            while let Some(d) = p.next_data() {
                out.push(d.to_owned());
            }
        }
        p.finish();
        while let Some(d) = p.next_data() {
            out.push(d.to_owned());
        }
        out
    }

    fn every_split(input: &[u8]) -> Vec<String> {
        let whole = events(input, input.len());
        for step in 1..input.len() {
            assert_eq!(events(input, step), whole, "split every {step} bytes");
        }
        whole
    }

    #[test]
    fn lf_crlf_and_cr_endings_at_every_split() {
        let want = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(every_split(b"data: a\n\ndata: b\n\ndata: c\n\n"), want);
        assert_eq!(
            every_split(b"data: a\r\n\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
            want
        );
        assert_eq!(every_split(b"data: a\r\rdata: b\r\rdata: c\r\r"), want);
        assert_eq!(
            every_split(b"data: a\r\n\ndata: b\n\r\ndata: c\r\r\n"),
            want
        );
    }

    #[test]
    fn multi_line_data_comments_other_fields_and_spacing() {
        let input = b": hello\nevent: x\nid: 7\nretry: 5\ndata:one\ndata:  two\ndata\n\n\n\n";
        assert_eq!(every_split(input), vec!["one\n two\n".to_owned()]);
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert!(every_split(b"\n\n: keep-alive\n\nevent: ping\n\n").is_empty());
        assert_eq!(every_split(b"data:\n\n"), vec![String::new()]);
    }

    #[test]
    fn the_last_event_counts_without_its_blank_line_or_line_break() {
        assert_eq!(every_split(b"data: a\n\ndata: b\n"), vec!["a", "b"]);
        assert_eq!(every_split(b"data: a\n\ndata: b"), vec!["a", "b"]);
        assert_eq!(every_split(b"data: a\r"), vec!["a"]);
    }

    #[test]
    fn a_leading_bom_is_dropped_once() {
        assert_eq!(every_split(b"\xEF\xBB\xBFdata: a\n\n"), vec!["a"]);
        assert_eq!(
            every_split(b"data: \xEF\xBB\xBFa\n\n"),
            vec!["\u{feff}a".to_owned()]
        );
        // Bytes that only start like a BOM are kept.
        assert_eq!(every_split(b"\xEF\xBBx\n\ndata: a\n\n"), vec!["a"]);
    }

    #[test]
    fn multibyte_text_split_between_reads_and_invalid_utf8() {
        let input = "data: {\"content\":\"你好，世界\"}\n\n".as_bytes();
        assert_eq!(every_split(input), vec!["{\"content\":\"你好，世界\"}"]);
        assert_eq!(every_split(b"data: a\xFFb\n\n"), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn a_line_past_the_cap_is_an_error_and_lines_below_it_are_not() {
        // A line just under the cap, received in pieces, is read whole.
        let mut p = SseParser::default();
        let piece = vec![b'a'; 1 << 20];
        p.push(b"data: ").unwrap();
        for _ in 0..15 {
            p.push(&piece).unwrap();
        }
        p.push(b"\n\n").unwrap();
        assert_eq!(p.next_data().map(str::len), Some(15 << 20));
        assert_eq!(p.next_data(), None);

        // One without a line break grows until it passes the cap, then fails.
        let mut p = SseParser::default();
        p.push(b"data: ").unwrap();
        let mut pushed = 6;
        let err = loop {
            match p.push(&piece) {
                Ok(()) => pushed += piece.len(),
                Err(e) => break e,
            }
            assert!(p.next_data().is_none());
            assert!(pushed <= MAX_LINE, "{pushed} bytes taken in one line");
        };
        assert!(err.to_string().contains("protocol error"), "{err}");
        assert_eq!(err.class(), "transient");

        // The data lines of one event count together.
        let mut p = SseParser::default();
        let line = [b"data: ".as_slice(), &piece, b"\n"].concat();
        let mut failed = false;
        for _ in 0..20 {
            if p.push(&line).is_err() {
                failed = true;
                break;
            }
            assert!(p.next_data().is_none());
        }
        assert!(failed, "an event of 20 MiB in data lines");

        // After a dispatched event, its data no longer counts.
        let mut p = SseParser::default();
        for _ in 0..40 {
            p.push(&[b"data: ".as_slice(), &piece, b"\n\n"].concat())
                .unwrap();
            assert_eq!(p.next_data().map(str::len), Some(1 << 20));
        }
    }
}
