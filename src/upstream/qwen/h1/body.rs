//! An answer's head and body: the status line and headers parsed with `httparse`, then the
//! body by its framing (chunked, a length, or until close), decompressed when the upstream
//! compressed it.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::conn::Conn;
use super::{Error, Idle};

/// Longest head accepted, and most headers.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line or trailer line.
const MAX_LINE: usize = 4 * 1024;
/// Most body bytes gathered from buffered chunks into one piece.
const MAX_PIECE: usize = 64 * 1024;

pub(super) struct Head {
    pub status: u16,
    pub headers: HeaderMap,
    /// HTTP/1.1 without `connection: close`.
    pub keep_alive: bool,
}

/// Parses a head from the front of `buf` and removes it; `None` until it is complete.
pub(super) fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(Error::Protocol("answer head too long".into()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(format!("malformed answer head: {e}"))),
    };
    let status = parsed.code.unwrap_or(0);
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut keep_alive = parsed.version == Some(1);
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Err(Error::Protocol("malformed answer header".into()));
        };
        if name == reqwest::header::CONNECTION && has_token(&value, "close") {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    let _ = buf.split_to(len);
    Ok(Some(Head {
        status,
        headers,
        keep_alive,
    }))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// How the body's end is known.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// Where a chunked body's reader stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// The framing for `head`, answering a request of `method` (RFC 9112 §6.3).
pub(super) fn framing(head: &Head, method: &reqwest::Method) -> Result<Framing, Error> {
    if method == reqwest::Method::HEAD || matches!(head.status, 100..=199 | 204 | 304) {
        return Ok(Framing::Done);
    }
    if let Some(te) = head.headers.get(reqwest::header::TRANSFER_ENCODING) {
        let last = te.to_str().ok().and_then(|v| v.rsplit(',').next());
        return match last.map(str::trim) {
            Some(c) if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked(Chunked::Size)),
            _ => Ok(Framing::UntilClose),
        };
    }
    let mut lengths = head.headers.get_all(reqwest::header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(Framing::UntilClose),
        (Some(v), None) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .map(|n| {
                if n == 0 {
                    Framing::Done
                } else {
                    Framing::Length(n)
                }
            })
            .ok_or_else(|| Error::Protocol("invalid content-length".into())),
        (Some(_), Some(_)) => Err(Error::Protocol("repeated content-length".into())),
    }
}

impl Framing {
    /// Takes what `buf` holds of the body: the data of every complete or partial chunk in it,
    /// gathered into one piece. `None` when more must be read first (or the body is done).
    pub fn take(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        match self {
            Framing::Done => Ok(None),
            Framing::UntilClose if buf.is_empty() => Ok(None),
            Framing::UntilClose => Ok(Some(buf.split().freeze())),
            Framing::Length(left) => {
                let Some((piece, last)) = counted(left, buf) else {
                    return Ok(None);
                };
                if last {
                    *self = Framing::Done;
                }
                Ok(Some(piece))
            }
            Framing::Chunked(state) => {
                let mut first: Option<Bytes> = None;
                let mut more: Option<BytesMut> = None;
                let mut total = 0;
                while total < MAX_PIECE {
                    let Some(piece) = chunk_step(state, buf)? else {
                        break;
                    };
                    if matches!(state, Chunked::Trailers) && piece.is_empty() {
                        // The last chunk's trailers end with an empty line.
                        if trailers_done(buf)? {
                            *self = Framing::Done;
                        }
                        break;
                    }
                    if piece.is_empty() {
                        continue;
                    }
                    total += piece.len();
                    match (&first, &mut more) {
                        (None, _) => first = Some(piece),
                        (Some(f), None) => {
                            // What is left in `buf` bounds what more can be gathered.
                            let most = f.len() + piece.len() + buf.len().min(MAX_PIECE);
                            let mut m = BytesMut::with_capacity(most);
                            m.extend_from_slice(f);
                            m.extend_from_slice(&piece);
                            more = Some(m);
                        }
                        (Some(_), Some(m)) => m.extend_from_slice(&piece),
                    }
                }
                Ok(more.map(BytesMut::freeze).or(first))
            }
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Framing::Done
    }
}

/// One step of a chunked body: a piece of data (possibly empty after a size line or a data
/// end), or `None` when `buf` holds too little. In `Trailers` it returns an empty piece.
fn chunk_step(state: &mut Chunked, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
    match state {
        Chunked::Size => {
            let Some(line) = take_line(buf)? else {
                return Ok(None);
            };
            let digits = line[..].split(|&b| b == b';').next().unwrap_or_default();
            let digits = std::str::from_utf8(digits)
                .map_err(|_| Error::Protocol("invalid chunk size".into()))?
                .trim();
            let size = u64::from_str_radix(digits, 16)
                .ok()
                .filter(|_| !digits.is_empty() && !digits.starts_with('+'))
                .ok_or_else(|| Error::Protocol("invalid chunk size".into()))?;
            *state = if size == 0 {
                Chunked::Trailers
            } else {
                Chunked::Data(size)
            };
            Ok(Some(Bytes::new()))
        }
        Chunked::Data(left) => {
            let Some((piece, last)) = counted(left, buf) else {
                return Ok(None);
            };
            if last {
                *state = Chunked::DataEnd;
            }
            Ok(Some(piece))
        }
        Chunked::DataEnd => match take_line(buf)? {
            Some(line) if line.is_empty() => {
                *state = Chunked::Size;
                Ok(Some(Bytes::new()))
            }
            Some(_) => Err(Error::Protocol("chunk data longer than its size".into())),
            None => Ok(None),
        },
        Chunked::Trailers => Ok(Some(Bytes::new())),
    }
}

/// Up to `left` bytes from the front of `buf`, counted off `left`, and whether they were the
/// last; `None` when `buf` is empty.
fn counted(left: &mut u64, buf: &mut BytesMut) -> Option<(Bytes, bool)> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Some((buf.split_to(n).freeze(), *left == 0))
}

/// Consumes trailer lines up to the empty one; whether it was reached.
fn trailers_done(buf: &mut BytesMut) -> Result<bool, Error> {
    while let Some(line) = take_line(buf)? {
        if line.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A line up to `\n` (the `\r` before it dropped), removed from `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
    match memchr::memchr(b'\n', buf) {
        Some(at) => {
            let mut line = buf.split_to(at + 1);
            line.truncate(at);
            if line.last() == Some(&b'\r') {
                line.truncate(at - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Error::Protocol("chunk line too long".into())),
        None => Ok(None),
    }
}

/// A response body: read from the connection as it is consumed; the connection goes back to
/// the pool once the body has ended (and is closed if the body is dropped before).
pub(crate) struct Body {
    inner: Inner,
}

enum Inner {
    Raw(Raw),
    Decoded(Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>),
}

pub(super) struct Raw {
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes when the body ends; `None` if it cannot be reused.
    idle: Option<Idle>,
}

impl Raw {
    pub fn new(conn: Conn, framing: Framing, idle: Option<Idle>) -> Self {
        let mut raw = Raw {
            conn: Some(conn),
            framing,
            idle,
        };
        raw.release_if_done();
        raw
    }

    /// The next piece of the body; `None` at its end. Cancel-safe: its only wait is a read.
    async fn next(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            let conn = self.conn.as_mut()?;
            match self.framing.take(&mut conn.buf) {
                Ok(Some(piece)) => {
                    self.release_if_done();
                    return Some(Ok(piece));
                }
                Ok(None) if self.framing.is_done() => {
                    self.release_if_done();
                    return None;
                }
                Ok(None) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(e));
                }
            }
            match conn.read_more().await {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.conn = None;
                    return None;
                }
                Ok(0) => {
                    self.conn = None;
                    return Some(Err(Error::Io(
                        "the connection closed before the answer ended".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(Error::Io(e.to_string())));
                }
            }
        }
    }

    fn release_if_done(&mut self) {
        if !self.framing.is_done() {
            return;
        }
        if let Some(conn) = self.conn.take() {
            // Bytes beyond the body: the upstream sent more than it framed; do not reuse.
            if let (Some(idle), true) = (self.idle.take(), conn.buf.is_empty()) {
                idle.put(conn);
            }
        }
    }
}

impl Body {
    pub(super) fn new(raw: Raw, headers: &HeaderMap) -> Self {
        let coding = headers
            .get(reqwest::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let inner = match coding.as_deref() {
            Some(c @ ("gzip" | "x-gzip" | "deflate" | "br")) => Inner::Decoded(decoded(raw, c)),
            _ => Inner::Raw(raw),
        };
        Body { inner }
    }

    /// The next piece of the body; `None` at its end. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Bytes, Error>> {
        match &mut self.inner {
            Inner::Raw(raw) => raw.next().await,
            Inner::Decoded(s) => s
                .next()
                .await
                .map(|r| r.map_err(|e| Error::Io(format!("cannot decompress the answer: {e}")))),
        }
    }
}

fn decoded(raw: Raw, coding: &str) -> Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder};
    use tokio_util::io::{ReaderStream, StreamReader};
    let compressed = futures::stream::unfold(raw, |mut raw| async move {
        let next = raw.next().await?;
        Some((next.map_err(std::io::Error::other), raw))
    });
    let reader = StreamReader::new(Box::pin(compressed));
    match coding {
        "br" => Box::pin(ReaderStream::new(BrotliDecoder::new(reader))),
        "deflate" => Box::pin(ReaderStream::new(ZlibDecoder::new(reader))),
        _ => Box::pin(ReaderStream::new(GzipDecoder::new(reader))),
    }
}
