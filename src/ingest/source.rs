//! Export objects: listing them under a source location, reading their bytes, taking off
//! gzip, and cutting the text into records with the line each starts on.
//!
//! The format is recognised by content, not by the name: gzip by its magic bytes, a JSON
//! array by its `[`, NDJSON by a first line that is a whole JSON value, and anything else that
//! starts with `{` as a stream of (pretty-printed) objects.

use std::io::Read;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::storage::Location;

/// One export object as listed: its identity for the ingest log and for "latest delivery
/// wins" ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Path inside the store, used to fetch it.
    pub path: Path,
    /// Full URL, the object's name in the lake (`source_object` columns, `ingest_log`).
    pub url: String,
    pub size: u64,
    pub e_tag: Option<String>,
    /// Microseconds since the epoch; first key of "latest delivery wins".
    pub last_modified: i64,
}

impl SourceObject {
    fn from_meta(location: &Location, prefix: &Path, meta: ObjectMeta) -> Self {
        let relative: Vec<_> = meta
            .location
            .prefix_match(prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
            .unwrap_or_default();
        let url = if relative.is_empty() {
            format!("{}{}", location.url(), meta.location)
        } else {
            format!("{}{}", location.url(), relative.join("/"))
        };
        Self {
            path: meta.location,
            url,
            size: meta.size,
            e_tag: meta.e_tag,
            last_modified: meta.last_modified.timestamp_micros(),
        }
    }

    pub fn last_modified_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.last_modified).unwrap_or_default()
    }

    /// The version of the object the lake has seen: a changed object is read again.
    pub fn version(&self) -> ObjectVersion {
        ObjectVersion {
            url: self.url.clone(),
            size: self.size as i64,
            modified_at: self.last_modified,
            etag: self.e_tag.clone().unwrap_or_default(),
        }
    }
}

/// One version of an export object, as `ingest_log` records it (`source_object`,
/// `source_size`, `source_modified_at`, `source_etag`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    pub url: String,
    pub size: i64,
    /// Microseconds since the epoch.
    pub modified_at: i64,
    /// Empty when the store gives none.
    pub etag: String,
}

/// The export objects under a source, and the entries that could not be listed.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<SourceObject>,
    /// Local entries skipped, each with why: a symbolic-link loop, a name the object store
    /// cannot represent (a newline in it), an unreadable folder.
    pub skipped: Vec<String>,
}

/// Lists every export object under `location`, oldest first (then by name), skipping hidden
/// and marker files (`.…`, `_…`) such as `_SUCCESS` and `.DS_Store`. On a local folder, an
/// entry that cannot be listed is skipped and reported, and the rest is listed; elsewhere a
/// listing error fails the listing (it is the service's answer, not one entry's).
pub async fn list_source_objects(
    store: &dyn ObjectStore,
    location: &Location,
    prefix: &Path,
) -> Result<Listing, object_store::Error> {
    list_source_objects_after(store, location, prefix, None).await
}

/// How often a scheduled pass over a remote source lists it whole. In between, a pass lists
/// only the keys after the greatest one seen: exports named by time (as Genesys and most
/// exporters name them) are found at the next pass; an object written under an earlier
/// name, or overwritten in place, at the next whole listing.
pub const WHOLE_LISTING_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// What earlier passes learnt of each remote source's listing ([`WHOLE_LISTING_EVERY`]).
#[derive(Debug, Default)]
pub struct Listings(std::collections::HashMap<String, ListedUpTo>);

/// How far a source was listed: its greatest key, and when it was last listed whole.
#[derive(Debug, Clone)]
pub struct ListedUpTo {
    greatest: Path,
    whole_at: std::time::Instant,
}

impl Listings {
    /// Whether a pass listed `source` before and kept how far it got.
    pub fn knows(&self, source: &Location) -> bool {
        self.0.contains_key(source.url().as_str())
    }

    /// Lists `source`: whole, or only after its greatest key while the last whole listing is
    /// recent. Also how far this listing got, to [`Self::keep`] once the pass has committed
    /// what it listed (a pass that fails part-way must not leave unread objects behind the
    /// key the next pass starts after); none for a local folder, always listed whole.
    pub async fn list(
        &self,
        store: &dyn ObjectStore,
        source: &Location,
        prefix: &Path,
    ) -> Result<(Listing, Option<ListedUpTo>), object_store::Error> {
        let previous = self.0.get(source.url().as_str()).filter(|p| p.whole_at.elapsed() < WHOLE_LISTING_EVERY);
        let after = previous.map(|p| p.greatest.clone());
        let listed = list_source_objects_after(store, source, prefix, after.as_ref()).await?;
        if source.url().scheme() == "file" {
            return Ok((listed, None));
        }
        let whole_at = previous.map_or_else(std::time::Instant::now, |p| p.whole_at);
        let greatest = listed.objects.iter().map(|o| &o.path).max().cloned().into_iter().chain(after).max();
        Ok((listed, greatest.map(|greatest| ListedUpTo { greatest, whole_at })))
    }

    pub fn keep(&mut self, source: &Location, listed: ListedUpTo) {
        self.0.insert(source.url().to_string(), listed);
    }
}

/// [`list_source_objects`], of a remote store only the keys after `after` (S3's
/// `start-after`: one request per 1,000 new keys, not per 1,000 keys in all). A local folder
/// is always listed whole (walking it is cheap).
pub async fn list_source_objects_after(
    store: &dyn ObjectStore,
    location: &Location,
    prefix: &Path,
    after: Option<&Path>,
) -> Result<Listing, object_store::Error> {
    let (listed, skipped) = match location.url().to_file_path() {
        Ok(root) if location.url().scheme() == "file" => {
            tokio::task::spawn_blocking(move || crate::storage::list_local(&root))
                .await
                .map_err(|e| object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })?
        }
        _ => {
            let listing = match after {
                Some(offset) => store.list_with_offset(Some(prefix), offset),
                None => store.list(Some(prefix)),
            };
            (futures::TryStreamExt::try_collect(listing).await?, Vec::new())
        }
    };
    let mut objects: Vec<SourceObject> = listed
        .into_iter()
        // Only the parts below the source prefix count: the prefix itself may be hidden
        // (a temporary folder such as /tmp/.tmpXYZ).
        .filter(|meta| {
            meta.location.prefix_match(prefix).is_some_and(|mut parts| {
                parts.all(|p| !p.as_ref().starts_with('.') && !p.as_ref().starts_with('_'))
            })
        })
        .map(|meta| SourceObject::from_meta(location, prefix, meta))
        .collect();
    objects.sort_by(|a, b| (a.last_modified, &a.url).cmp(&(b.last_modified, &b.url)));
    Ok(Listing { objects, skipped })
}

/// How an object's text is cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON value per line.
    Ndjson,
    /// A top-level array; each element is a record.
    JsonArray,
    /// One or more JSON values one after another, possibly spanning lines.
    JsonStream,
}

impl Framing {
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Ndjson => "ndjson",
            Framing::JsonArray => "json_array",
            Framing::JsonStream => "json",
        }
    }
}

/// A record's bytes within the object's text and the 1-based line it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub line: u64,
    pub start: usize,
    pub end: usize,
}

/// How far a compressed object may expand: past either bound it is refused (a gzip bomb:
/// 12.5 MB expanding to 3.2 GB), not read into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpansionLimits {
    /// Bytes after decompression.
    pub max_bytes: u64,
    /// Decompressed size over compressed size. Exports of JSON compress 5-20 times.
    pub max_ratio: u64,
}

impl Default for ExpansionLimits {
    fn default() -> Self {
        Self { max_bytes: 1 << 30, max_ratio: 100 }
    }
}

/// Why an object's bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("corrupt gzip data: {0}")]
    Corrupt(#[from] std::io::Error),
    // Sizes in MB: a run of 7 digits would read as a phone number to the masking.
    #[error("gzip expands past {limit}: {:.2} MB compressed gave {:.2} MB or more (a decompression bomb; else raise --max-expanded-mb / --max-expansion-ratio)", *.compressed as f64 / 1e6, *.read as f64 / 1e6)]
    TooLarge { limit: String, compressed: usize, read: u64 },
}

/// Output past which the ratio is checked as decompression goes, on the compressed bytes
/// read so far: a bomb is refused after this much, not after the whole allowance.
const RATIO_CHECKED_FROM: usize = 64 << 20;

/// Takes off gzip (possibly several members) when the bytes start with its magic number,
/// reading at most as much as `limits` allow.
pub fn decompress(bytes: &[u8], limits: ExpansionLimits) -> Result<(std::borrow::Cow<'_, [u8]>, bool), DecompressError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok((std::borrow::Cow::Borrowed(bytes), false));
    }
    let ratio_limit = || format!("{}x its compressed size", limits.max_ratio);
    let too_large = |limit: String, read: usize| DecompressError::TooLarge { limit, compressed: bytes.len(), read: read as u64 };
    let consumed = std::cell::Cell::new(0usize);
    let counted = CountingReader { inner: bytes, read: &consumed };
    let mut decoder = flate2::read::MultiGzDecoder::new(counted);
    // Grown as it is read: the size is unknown until the end.
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = decoder.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() as u64 > limits.max_bytes {
            return Err(too_large(format!("{} MB", limits.max_bytes >> 20), out.len()));
        }
        let allowed = (consumed.get() as u64).saturating_mul(limits.max_ratio);
        if out.len() >= RATIO_CHECKED_FROM && out.len() as u64 > allowed {
            return Err(too_large(ratio_limit(), out.len()));
        }
    }
    if out.len() as u64 > (bytes.len() as u64).saturating_mul(limits.max_ratio) {
        return Err(too_large(ratio_limit(), out.len()));
    }
    Ok((std::borrow::Cow::Owned(out), true))
}

/// An object's bytes as they arrive (a large object, never held whole): gzip taken off on
/// the fly within `limits`. Returns the text reader and whether the object was gzipped.
pub fn streaming_text<R: Read + 'static>(raw: R, limits: ExpansionLimits) -> std::io::Result<(Box<dyn std::io::BufRead>, bool)> {
    use std::io::BufRead;
    let mut raw = std::io::BufReader::with_capacity(1 << 20, raw);
    if !raw.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        return Ok((Box::new(raw), false));
    }
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let counted = CountingStream { inner: raw, read: std::rc::Rc::clone(&consumed) };
    let limited = LimitedGzip { decoder: flate2::read::MultiGzDecoder::new(counted), consumed, out: 0, limits };
    Ok((Box::new(std::io::BufReader::with_capacity(1 << 20, limited)), true))
}

/// Counts the compressed bytes a streaming decoder has taken.
struct CountingStream<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<R: Read> Read for CountingStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n);
        Ok(n)
    }
}

/// A gzip decoder that fails, as [`decompress`] refuses, once its output passes `limits`.
struct LimitedGzip<R: Read> {
    decoder: flate2::read::MultiGzDecoder<CountingStream<R>>,
    consumed: std::rc::Rc<std::cell::Cell<usize>>,
    out: u64,
    limits: ExpansionLimits,
}

impl<R: Read> Read for LimitedGzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.decoder.read(buf).map_err(|e| std::io::Error::other(DecompressError::Corrupt(e).to_string()))?;
        self.out += n as u64;
        let compressed = self.consumed.get();
        let too_large = |limit: String| {
            std::io::Error::other(DecompressError::TooLarge { limit, compressed, read: self.out }.to_string())
        };
        if self.out > self.limits.max_bytes {
            return Err(too_large(format!("{} MB", self.limits.max_bytes >> 20)));
        }
        let allowed = (compressed as u64).saturating_mul(self.limits.max_ratio);
        if (self.out >= RATIO_CHECKED_FROM as u64 || n == 0) && self.out > allowed {
            return Err(too_large(format!("{}x its compressed size", self.limits.max_ratio)));
        }
        Ok(n)
    }
}

/// Counts the compressed bytes the decoder has taken.
struct CountingReader<'a> {
    inner: &'a [u8],
    read: &'a std::cell::Cell<usize>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n);
        Ok(n)
    }
}

/// Cuts an object's text into records.
pub fn split_records(text: &[u8]) -> (Framing, Vec<RecordSpan>) {
    let bom = if text.starts_with(&[0xef, 0xbb, 0xbf]) { 3 } else { 0 };
    let Some(first) = text[bom..].iter().position(|b| !b.is_ascii_whitespace()) else {
        return (Framing::Ndjson, Vec::new());
    };
    let first = first + bom;
    match text[first] {
        b'[' => (Framing::JsonArray, split_array(text, first)),
        b'{' => {
            // A text of one line is read as a stream of values: it gives the same record when
            // the line is one whole value and the right ones when it is not (values run
            // together, a cut one), without parsing the line to decide (a details page is one
            // line of hundreds of KB: that parse took 3% of a details ingest).
            let one_line = memchr(b'\n', &text[first..]).is_none_or(|i| text[first + i..].iter().all(u8::is_ascii_whitespace));
            if !one_line && looks_like_ndjson(&text[first..]) {
                (Framing::Ndjson, split_lines(text))
            } else {
                (Framing::JsonStream, split_stream(text, first))
            }
        }
        _ => (Framing::Ndjson, split_lines(text)),
    }
}

/// NDJSON when one of the first lines that start with `{` is a whole JSON value on its own:
/// a broken first line (cut, or 20 MB of garbage) must not turn the rest of the object into
/// one unterminated "value". Pretty-printed objects never have a whole one on a line at the
/// first column.
pub fn looks_like_ndjson(text: &[u8]) -> bool {
    const LINES_TRIED: usize = 10;
    let mut start = 0;
    let mut tried = 0;
    while start < text.len() && tried < LINES_TRIED {
        let end = memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
        let line = &text[start..end];
        if line.first() == Some(&b'{') {
            tried += 1;
            if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
                return true;
            }
        }
        start = end + 1;
    }
    false
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
}

fn split_lines(text: &[u8]) -> Vec<RecordSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut line = 1;
    while start < text.len() {
        let end = memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
        if text[start..end].iter().any(|b| !b.is_ascii_whitespace()) {
            spans.push(RecordSpan { line, start, end });
        }
        start = end + 1;
        line += 1;
    }
    spans
}

/// Scans JSON text from `pos` for the end of one value, honouring strings and nesting.
/// Returns the index just past the value (or the text's end when it is unterminated), and
/// the number of newlines passed.
fn scan_value(text: &[u8], mut pos: usize, stop_at: &[u8]) -> (usize, u64) {
    let mut depth = 0usize;
    let mut newlines = 0;
    while pos < text.len() {
        match text[pos] {
            b'\n' => newlines += 1,
            // A string is jumped through to its closing quote: strings are most of a
            // record's bytes, and nothing in them but `"`, `\` and newlines matters here.
            b'"' => {
                pos += 1;
                loop {
                    let Some(i) = text.get(pos..).and_then(|rest| memchr::memchr3(b'"', b'\\', b'\n', rest)) else {
                        return (text.len(), newlines);
                    };
                    pos += i;
                    match text[pos] {
                        b'"' => break,
                        b'\n' => newlines += 1,
                        // An escape: the character after it is skipped (a newline counted).
                        _ => {
                            pos += 1;
                            newlines += u64::from(text.get(pos) == Some(&b'\n'));
                        }
                    }
                    pos += 1;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 && stop_at.is_empty() {
                    return (pos + 1, newlines);
                }
            }
            b if depth == 0 && stop_at.contains(&b) => return (pos, newlines),
            _ => {}
        }
        pos += 1;
    }
    (text.len(), newlines)
}

fn split_array(text: &[u8], open: usize) -> Vec<RecordSpan> {
    let mut spans = Vec::new();
    let mut line = 1 + text[..open].iter().filter(|&&b| b == b'\n').count() as u64;
    let mut pos = open + 1;
    loop {
        while pos < text.len() && (text[pos].is_ascii_whitespace() || text[pos] == b',') {
            if text[pos] == b'\n' {
                line += 1;
            }
            pos += 1;
        }
        if pos >= text.len() || text[pos] == b']' {
            return spans;
        }
        let (end, newlines) = scan_value(text, pos, b",]");
        spans.push(RecordSpan { line, start: pos, end });
        line += newlines;
        pos = end;
    }
}

fn split_stream(text: &[u8], first: usize) -> Vec<RecordSpan> {
    let mut spans = Vec::new();
    let mut line = 1 + text[..first].iter().filter(|&&b| b == b'\n').count() as u64;
    let mut pos = first;
    loop {
        while pos < text.len() && text[pos].is_ascii_whitespace() {
            if text[pos] == b'\n' {
                line += 1;
            }
            pos += 1;
        }
        if pos >= text.len() {
            return spans;
        }
        let (end, newlines) = if text[pos] == b'{' || text[pos] == b'[' {
            scan_value(text, pos, b"")
        } else {
            // Garbage between objects: up to the end of its line is one bad record.
            let end = memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i);
            (end, 0)
        };
        spans.push(RecordSpan { line, start: pos, end });
        line += newlines;
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> (Framing, Vec<(u64, String)>) {
        let (framing, spans) = split_records(text.as_bytes());
        let recs = spans
            .iter()
            .map(|s| (s.line, text[s.start..s.end].trim().to_string()))
            .collect();
        (framing, recs)
    }

    #[test]
    fn ndjson_lines_keep_their_numbers_and_skip_blanks() {
        let (f, r) = records("{\"a\":1}\n\n{\"a\":2}\nnot json\n");
        assert_eq!(f, Framing::Ndjson);
        assert_eq!(r, vec![(1, "{\"a\":1}".into()), (3, "{\"a\":2}".into()), (4, "not json".into())]);
    }

    #[test]
    fn arrays_split_into_elements_even_with_a_bad_one() {
        let (f, r) = records("[\n {\"a\":\"x,]\"},\n {\"a\": oops},\n {\"b\":[1,2]}\n]");
        assert_eq!(f, Framing::JsonArray);
        assert_eq!(
            r,
            vec![(2, "{\"a\":\"x,]\"}".into()), (3, "{\"a\": oops}".into()), (4, "{\"b\":[1,2]}".into())]
        );
    }

    #[test]
    fn a_broken_first_line_does_not_swallow_the_rest() {
        let (f, r) = records("{\"a\": \"unterminated\n{\"a\":2}\n{\"a\":3}\n");
        assert_eq!(f, Framing::Ndjson);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1], (2, "{\"a\":2}".into()));
    }

    #[test]
    fn pretty_printed_objects_form_a_stream() {
        let (f, r) = records("{\n  \"a\": 1\n}\n{\n  \"a\": 2\n}\n");
        assert_eq!(f, Framing::JsonStream);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, 4);
    }

    #[test]
    fn a_one_line_text_is_read_as_a_stream_of_values() {
        let (f, r) = records("{\"a\":{\"b\":[1,2]}}\n\n");
        assert_eq!(f, Framing::JsonStream);
        assert_eq!(r, vec![(1, "{\"a\":{\"b\":[1,2]}}".into())]);
        // Values run together on the line are records of their own; a cut one is one too.
        let (_, r) = records("{\"a\":1}{\"a\":\"}{\"} {\"a\":");
        assert_eq!(r, vec![(1, "{\"a\":1}".into()), (1, "{\"a\":\"}{\"}".into()), (1, "{\"a\":".into())]);
    }

    /// The scan as it was before strings were jumped through: a byte at a time.
    fn scan_value_bytewise(text: &[u8], mut pos: usize, stop_at: &[u8]) -> (usize, u64) {
        let (mut depth, mut in_string, mut escaped, mut newlines) = (0usize, false, false, 0);
        while pos < text.len() {
            let b = text[pos];
            newlines += u64::from(b == b'\n');
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 && stop_at.is_empty() {
                            return (pos + 1, newlines);
                        }
                    }
                    _ if depth == 0 && stop_at.contains(&b) => return (pos, newlines),
                    _ => {}
                }
            }
            pos += 1;
        }
        (pos, newlines)
    }

    #[test]
    fn the_scan_for_a_value_s_end_agrees_with_a_byte_at_a_time_scan() {
        // Every text of up to 6 pieces that make scanning hard: quotes, escapes (of a quote,
        // of a backslash, of a newline, at the very end), brackets inside and outside
        // strings, separators, newlines.
        let pieces: [&[u8]; 11] = [b"\"", b"\\", b"\\\"", b"{", b"}", b"[", b"]", b",", b"\n", b"ab", b"\\\n"];
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        let mut checked = 0;
        for _ in 0..6 {
            texts = texts.iter().flat_map(|t| pieces.iter().map(move |p| [t.as_slice(), p].concat())).collect();
            for text in &texts {
                for stop_at in [&b""[..], b",]"] {
                    let opened = [b"{", text.as_slice()].concat();
                    assert_eq!(
                        scan_value(&opened, 0, stop_at),
                        scan_value_bytewise(&opened, 0, stop_at),
                        "{:?} stopping at {:?}",
                        String::from_utf8_lossy(&opened),
                        String::from_utf8_lossy(stop_at)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 3_000_000, "{checked}");
    }

    #[test]
    fn gzip_is_recognised_by_content() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}\n").unwrap();
        let gz = enc.finish().unwrap();
        let limits = ExpansionLimits::default();
        let (text, gzipped) = decompress(&gz, limits).unwrap();
        assert_eq!((text.as_ref(), gzipped), (&b"{\"a\":1}\n"[..], true));
        let (text, gzipped) = decompress(b"{}", limits).unwrap();
        assert_eq!((text.as_ref(), gzipped), (&b"{}"[..], false));
        assert!(matches!(decompress(&gz[..gz.len() / 2], limits), Err(DecompressError::Corrupt(_))));
    }

    #[test]
    fn expansion_past_the_limits_is_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let line = b"{\"event_id\":\"e\",\"interaction_id\":\"i\",\"timestamp\":\"2024-03-04T09:00:00Z\"}\n";
        for _ in 0..100_000 {
            enc.write_all(line).unwrap();
        }
        let gz = enc.finish().unwrap();
        let expanded = (line.len() * 100_000) as u64;
        let ratio = expanded / gz.len() as u64;
        assert!(ratio > 100, "{ratio}");
        let err = decompress(&gz, ExpansionLimits { max_bytes: 1 << 30, max_ratio: 100 }).unwrap_err().to_string();
        assert!(err.contains("expands past 100x its compressed size"), "{err}");
        let err = decompress(&gz, ExpansionLimits { max_bytes: 1 << 20, max_ratio: 10_000 }).unwrap_err().to_string();
        assert!(err.contains("expands past 1 MB"), "{err}");
        let limits = ExpansionLimits { max_bytes: expanded, max_ratio: ratio + 1 };
        assert_eq!(decompress(&gz, limits).unwrap().0.len() as u64, expanded);

        // A bomb is refused once the ratio shows, not after the whole allowance: 100 gzip
        // members of 1 MB of zeros each (100 MB from ~100 KB) stop at 64 MB.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let member = enc.finish().unwrap();
        let bomb = member.repeat(100);
        match decompress(&bomb, ExpansionLimits { max_bytes: 1 << 30, max_ratio: 100 }) {
            Err(DecompressError::TooLarge { read, .. }) => assert!(read < 66 << 20, "{read}"),
            other => panic!("{:?}", other.map(|(out, _)| out.len())),
        }
    }
}
