//! Fetching: each object read (whole, or as a stream for a large one) and parsed on tasks
//! of its own, its parts handed over in order. Parsing stops within a few records when the
//! pass is cancelled, and a parse that panics costs its object, not the pass.

use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use tracing::warn;

use crate::ingest::{parse_object_in_parts, parse_stream_in_parts, ParseOptions, ParsedObject, SourceObject};
use crate::lake::{LakeError, LakeOptions};

/// What became of one listed object.
pub(crate) enum Fetched {
    Parsed(ParsedObject),
    /// Deleted between listing and reading.
    Gone,
    /// A local object that cannot be read, with why.
    Skipped(String),
}

/// The text of a panic's payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "a panic".to_string(), |text| text.to_string()),
    }
}

/// Fault injection for tests of what a pass does when an object's processing panics:
/// `CCLAKE_FAULT_PANIC_OBJECT=<suffix>` makes the parse of every object whose path ends so
/// panic, as a dependency might.
fn fault_injection(object: &SourceObject) {
    if let Some(suffix) = std::env::var_os("CCLAKE_FAULT_PANIC_OBJECT") {
        if !suffix.is_empty() && object.path.as_ref().ends_with(&*suffix.to_string_lossy()) {
            panic!("fault injected into {} by CCLAKE_FAULT_PANIC_OBJECT", object.path);
        }
    }
}

/// A streamed object's body, read on a blocking thread as its chunks arrive. A store error
/// is kept aside: it must fail the read of the object, not make it a bad object.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    failed: Arc<std::sync::Mutex<Option<object_store::Error>>>,
}

impl ChunkReader {
    fn channel() -> (tokio::sync::mpsc::Sender<object_store::Result<bytes::Bytes>>, Self) {
        // A few chunks in flight: the read stays ahead of parsing, within a few MB.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Self { chunks: rx, current: bytes::Bytes::new(), failed: Arc::default() })
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    let message = e.to_string();
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// What a failed read of `object` means: deleted between listing and reading, nothing to
/// ingest; one unreadable local file (permissions, a name the store cannot open) is skipped
/// and read again next pass; elsewhere a read error fails the pass.
fn read_failed(object: &SourceObject, local: bool, e: object_store::Error) -> Result<Fetched, LakeError> {
    match e {
        object_store::Error::NotFound { .. } => {
            warn!(object = %object.url, "source object disappeared before it was read");
            Ok(Fetched::Gone)
        }
        e if local => Ok(Fetched::Skipped(format!("{}: {e}", object.url).escape_debug().to_string())),
        source => Err(LakeError::ReadSource { object: object.url.clone(), source }),
    }
}

/// One object's read and parse, handing its parts to the pass. A send to a pass that has
/// ended goes nowhere; the parse itself stops at its next record then (the pass cancels
/// its parsers however it ends).
struct Fetch {
    object: SourceObject,
    parse: Arc<ParseOptions>,
    resume_after: u64,
    part_rows: usize,
    local: bool,
    parts: tokio::sync::mpsc::Sender<Result<Fetched, LakeError>>,
}

impl Fetch {
    async fn run(self, store: Arc<dyn object_store::ObjectStore>, stream_above: u64) {
        let (url, parts) = (self.object.url.clone(), self.parts.clone());
        if self.local && self.object.size <= stream_above {
            // The file the local store (rooted at `/`, `storage.rs`) would read.
            if let Ok(path) = object_store::local::LocalFileSystem::new().path_to_filesystem(&self.object.path) {
                let parsed = self.parse_local(path).await;
                return Self::parsed(&url, &parts, parsed).await;
            }
        }
        let get = match store.get(&self.object.path).await {
            Ok(get) => get,
            Err(e) => {
                let _ = parts.send(read_failed(&self.object, self.local, e)).await;
                return;
            }
        };
        let parsed = if self.object.size <= stream_above {
            match get.bytes().await {
                Ok(bytes) => self.parse_whole(bytes).await,
                Err(e) => {
                    let _ = parts.send(read_failed(&self.object, self.local, e)).await;
                    return;
                }
            }
        } else {
            self.parse_streamed(get.into_stream()).await
        };
        Self::parsed(&url, &parts, parsed).await;
    }

    /// What became of a parse task: a panic (ours or a dependency's) costs this object, not
    /// the pass: it is named in the summary and the log, and read again next pass.
    async fn parsed(
        url: &str,
        parts: &tokio::sync::mpsc::Sender<Result<Fetched, LakeError>>,
        parsed: Result<(), tokio::task::JoinError>,
    ) {
        match parsed {
            Ok(()) => {}
            Err(e) if e.is_panic() => {
                let why = crate::ingest::mask::scrub_text(&panic_message(e.into_panic()));
                let entry = format!("{url}: processing failed unexpectedly ({why}); read again next pass");
                let _ = parts.send(Ok(Fetched::Skipped(entry.escape_debug().to_string()))).await;
            }
            Err(e) => {
                let _ = parts.send(Err(e.into())).await;
            }
        }
    }

    /// A local object read whole into a buffer kept from one object to the next:
    /// object_store's local read makes a fresh buffer per object, zeroes it and faults its
    /// pages in (benches/README.md, "Why the code is so"). The buffers are shared by the
    /// blocking threads, not one per thread: a pass's parses run on tens of them, each of
    /// which faulted in a buffer of its own ("seventh round"). A read that fails fails as
    /// the store's would ([`read_failed`]).
    async fn parse_local(self, path: std::path::PathBuf) -> Result<(), tokio::task::JoinError> {
        /// Buffers larger than this are not kept between objects.
        const KEPT_BYTES: usize = 16 << 20;
        /// Buffers kept at most (a pass parses about twice the cores' count at once).
        const KEPT_BUFFERS: usize = 8;
        static BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
        tokio::task::spawn_blocking(move || {
            fault_injection(&self.object);
            let mut buffer = BUFFERS.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
            buffer.clear();
            let read = std::fs::File::open(&path).and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut buffer));
            match read {
                Ok(_) => parse_object_in_parts(self.object, &buffer, &self.parse, self.resume_after, usize::MAX, |part| {
                    let _ = self.parts.blocking_send(Ok(Fetched::Parsed(part)));
                }),
                Err(e) => {
                    let e = match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            object_store::Error::NotFound { path: path.display().to_string(), source: Box::new(e) }
                        }
                        _ => object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) },
                    };
                    let _ = self.parts.blocking_send(read_failed(&self.object, true, e));
                }
            }
            let mut kept = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.capacity() <= KEPT_BYTES && kept.len() < KEPT_BUFFERS {
                kept.push(buffer);
            }
        })
        .await
    }

    /// An object read whole, parsed as one part on a blocking thread.
    async fn parse_whole(self, bytes: bytes::Bytes) -> Result<(), tokio::task::JoinError> {
        tokio::task::spawn_blocking(move || {
            fault_injection(&self.object);
            parse_object_in_parts(self.object, &bytes, &self.parse, self.resume_after, usize::MAX, |part| {
                let _ = self.parts.blocking_send(Ok(Fetched::Parsed(part)));
            })
        })
        .await
    }

    /// A large object read as a stream and parsed in parts as its chunks arrive.
    async fn parse_streamed(self, mut body: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>) -> Result<(), tokio::task::JoinError> {
        let (chunks, reader) = ChunkReader::channel();
        let pump = tokio::spawn(async move {
            while let Some(chunk) = body.next().await {
                if chunks.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        let parse = tokio::task::spawn_blocking(move || {
            fault_injection(&self.object);
            let failed_read = Arc::clone(&reader.failed);
            let (who, local, parts) = (self.object.clone(), self.local, self.parts);
            parse_stream_in_parts(self.object, reader, &self.parse, self.resume_after, self.part_rows, |part| {
                // A store that failed part-way is not a bad object: the completing part is
                // not handed over, and the object is read again.
                let store_error = failed_read.lock().unwrap_or_else(|e| e.into_inner()).take();
                let item = match store_error {
                    Some(e) if part.through_record.is_none() => read_failed(&who, local, e),
                    _ => Ok(Fetched::Parsed(part)),
                };
                let _ = parts.blocking_send(item);
            })
        })
        .await;
        pump.abort();
        parse
    }
}

/// Reads and parses one object on tasks of its own, handing over its parts in order: an
/// object up to `stream_above_bytes` is read whole and parsed as one part; a larger one
/// is read as a stream and parsed in parts of a quarter of a batch
/// ([`crate::ingest::parse_stream_in_parts`]), so memory does not grow with its size.
pub(crate) fn object_parts(
    options: &LakeOptions,
    store: Arc<dyn object_store::ObjectStore>,
    parse: Arc<ParseOptions>,
    object: SourceObject,
    resume_after: u64,
    local: bool,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<Fetched, LakeError>> + Send + 'static>> {
    let (parts, rx) = tokio::sync::mpsc::channel::<Result<Fetched, LakeError>>(1);
    let fetch = Fetch { object, parse, resume_after, part_rows: options.part_rows(), local, parts };
    tokio::spawn(fetch.run(store, options.stream_above_bytes));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::RecordBatch;

    /// What the local read hands over for `file`, listed as `size` bytes.
    async fn fetched(file: &std::path::Path, size: u64) -> Vec<Fetched> {
        let object = SourceObject {
            path: object_store::path::Path::from_absolute_path(file).unwrap(),
            url: format!("file://{}", file.display()),
            size,
            e_tag: None,
            last_modified: 0,
        };
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let parts = object_parts(&LakeOptions::default(), store, Arc::default(), object, 0, true);
        futures::StreamExt::collect::<Vec<_>>(parts).await.into_iter().map(|p| p.unwrap()).collect()
    }

    #[tokio::test]
    async fn a_local_object_is_parsed_gone_or_skipped_as_the_store_would_say() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("a.jsonl");
        let event = r#"{"event_id": "e1", "interaction_id": "1234567890", "timestamp": "2024-03-04T10:00:00Z", "queue_name": "Billing"}"#;
        std::fs::write(&events, format!("{event}\n{event}\n")).unwrap();
        match fetched(&events, 10).await.as_slice() {
            [Fetched::Parsed(part)] => {
                let facts = &part.rows[&crate::model::LakeTable::FactInteractions];
                let rows: usize = facts.iter().map(RecordBatch::num_rows).sum();
                assert_eq!(rows, 2, "both lines read, whatever size was listed: {:?}", part.rows.keys());
            }
            other => panic!("one parsed part expected, got {}", other.len()),
        }
        // Deleted after listing: nothing to ingest, no error.
        assert!(matches!(fetched(&dir.path().join("gone.jsonl"), 10).await.as_slice(), [Fetched::Gone]));
        // A name that cannot be read as a file: skipped, with the object named.
        std::fs::create_dir(dir.path().join("d.json")).unwrap();
        match fetched(&dir.path().join("d.json"), 10).await.as_slice() {
            [Fetched::Skipped(why)] => assert!(why.contains("d.json"), "{why}"),
            _ => panic!("a directory read as an object is skipped"),
        }
    }
}
