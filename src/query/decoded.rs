//! Columns of the lake's files decoded into Arrow arrays, kept in memory by a server's read
//! model up to a budget of bytes (`decoded_cache_mb`) and shared by every snapshot it plans.
//!
//! A data file never changes under its name, so a decoded column stays valid until a commit
//! removes its file. The cache holds columns, not whole files: a lake larger than the budget
//! keeps the columns its queries read (a KPI suite reads 7 of `fact_interactions`' 18). A
//! partition column is kept as its file's value for one batch's rows, not for every row.
//!
//! Which columns are decoded:
//! - a table no query has read yet: every column of every file, while the budget lasts (a
//!   small lake is wholly in memory before its first query);
//! - once queries have read a table: the columns they read ([`DecodedFiles::wanted`]), for
//!   the files a new snapshot adds;
//! - a scan that finds a file's columns missing reads that file from Parquet and asks for
//!   them ([`SnapshotTable`](super::snapshot_table::SnapshotTable) queues the decoding).
//!
//! When a column asked for does not fit, the least recently read columns that no scan has
//! read since the request make room (columns decoded up front and never read go first); a
//! column that still does not fit is not kept. Decoding runs on a thread of its own, one job
//! at a time: at most one core, never a thread that answers RPCs or runs queries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::ArrayRef;
use object_store::path::Path;
use tracing::warn;

/// A file in the cache: its table's store and its path there.
pub(crate) type FileKey = (String, Path);

/// Work for the decoding thread.
pub(crate) type DecodingJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// When a column was last read, on the cache's clock: `NEVER_READ` for columns decoded up
/// front that no scan has read yet.
const NEVER_READ: u64 = 0;

/// A column asked for that did not fit is not decoded again for this many scans: a query
/// whose columns the budget cannot hold would otherwise have them decoded (and dropped) on
/// every run.
const RETRY_AFTER_SCANS: u64 = 100;

#[derive(Debug)]
pub struct DecodedFiles {
    budget_bytes: usize,
    state: Mutex<DecodedState>,
    /// Decoding jobs queued or running, and a signal when one ends: [`DecodedFiles::settled`].
    tasks: tokio::sync::watch::Sender<usize>,
    /// Jobs for the decoding thread, taken one at a time. The thread ends once this sender is
    /// dropped and the queue is empty.
    queue: std::sync::mpsc::Sender<(DecodingJob, JobCount)>,
}

/// One queued or running job; dropping it (the job ended, or panicked) counts it out.
struct JobCount(tokio::sync::watch::Sender<usize>);

impl Drop for JobCount {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[derive(Debug)]
struct Column {
    array: ArrayRef,
    bytes: usize,
    last_read: u64,
}

/// A file's decoded columns, and its row count (a column may be shorter: a partition
/// column's value is the same on every row, and is kept for one batch's rows).
#[derive(Debug)]
struct DecodedFile {
    rows: usize,
    columns: HashMap<String, Column>,
}

#[derive(Debug, Default)]
struct DecodedState {
    files: HashMap<FileKey, DecodedFile>,
    /// Columns being decoded now: a second request meanwhile does not decode them again.
    loading: HashSet<(FileKey, String)>,
    /// Per store (table), the columns scans have read.
    wanted: HashMap<String, BTreeSet<String>>,
    /// Per store, the files of the newest snapshot seen: a new snapshot's own files are
    /// decoded up front, not every file again each time a snapshot is planned.
    seen: HashMap<String, HashSet<Path>>,
    /// Columns asked for that did not fit, with the tick they were refused at.
    refused: HashMap<(FileKey, String), u64>,
    used_bytes: usize,
    /// Ticks once per scan.
    clock: u64,
}

impl DecodedState {
    /// Frees the least recently read columns last read before `since` until `bytes` more fit
    /// in `budget`; false (nothing freed) when they cannot.
    fn make_room(&mut self, bytes: usize, budget: usize, since: u64) -> bool {
        if self.used_bytes + bytes <= budget {
            return true;
        }
        // Borrowed while choosing: only the columns that go are copied out.
        let mut candidates: Vec<(u64, usize, &FileKey, &String)> = self
            .files
            .iter()
            .flat_map(|(file, held)| {
                held.columns
                    .iter()
                    .filter(|(_, c)| c.last_read < since)
                    .map(move |(name, c)| (c.last_read, c.bytes, file, name))
            })
            .collect();
        let freeable: usize = candidates.iter().map(|c| c.1).sum();
        if self.used_bytes - freeable + bytes > budget {
            return false;
        }
        candidates.sort_by_key(|c| c.0);
        let mut used = self.used_bytes;
        let mut going: Vec<(FileKey, String, usize)> = Vec::new();
        for (_, freed, file, name) in candidates {
            if used + bytes <= budget {
                break;
            }
            going.push((file.clone(), name.clone(), freed));
            used -= freed;
        }
        for (file, name, freed) in going {
            if let Some(held) = self.files.get_mut(&file) {
                held.columns.remove(&name);
                if held.columns.is_empty() {
                    self.files.remove(&file);
                }
            }
            self.used_bytes -= freed;
        }
        true
    }
}

impl DecodedFiles {
    /// A cache of at most `budget_bytes`, with its decoding thread; `None` for a budget of 0
    /// (every file read from Parquet), or when no thread can be started.
    pub fn new(budget_bytes: usize) -> Option<Arc<Self>> {
        if budget_bytes == 0 {
            return None;
        }
        let (queue, jobs) = std::sync::mpsc::channel::<(DecodingJob, JobCount)>();
        let started = std::thread::Builder::new().name("cclake-decode".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return warn!(error = %e, "decoded files: no runtime; every file is read from Parquet"),
            };
            while let Ok((job, _count)) = jobs.recv() {
                runtime.block_on(job);
            }
        });
        if let Err(e) = started {
            warn!(error = %e, "decoded files: no thread; every file is read from Parquet");
            return None;
        }
        Some(Arc::new(Self {
            budget_bytes,
            state: Mutex::new(DecodedState::default()),
            tasks: tokio::sync::watch::Sender::new(0),
            queue,
        }))
    }

    /// Queues `job` for the decoding thread.
    pub(crate) fn enqueue(&self, job: DecodingJob) {
        self.tasks.send_modify(|n| *n += 1);
        // A thread that is gone drops the job, and with it the count.
        let _ = self.queue.send((job, JobCount(self.tasks.clone())));
    }

    /// Returns once no decoding job is queued or running (every column asked for so far is
    /// in memory, or did not fit).
    pub async fn settled(&self) {
        let mut tasks = self.tasks.subscribe();
        // The sender lives in `self`: waiting cannot fail.
        let _ = tasks.wait_for(|n| *n == 0).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DecodedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held now.
    pub fn used_bytes(&self) -> usize {
        self.lock().used_bytes
    }

    /// A new tick of the clock: what a scan reads is marked read then.
    pub(crate) fn tick(&self) -> u64 {
        let mut state = self.lock();
        state.clock += 1;
        state.clock
    }

    /// A scan of `store`'s table that reads the columns `names` starts: they are remembered
    /// as wanted, and the scan's tick is returned.
    pub(crate) fn scan_started(&self, store: &str, names: &[&str]) -> u64 {
        let mut state = self.lock();
        let wanted = state.wanted.entry(store.to_string()).or_default();
        for name in names {
            if !wanted.contains(*name) {
                wanted.insert(name.to_string());
            }
        }
        state.clock += 1;
        state.clock
    }

    /// The file's row count and its columns `names`, in that order, marked read at `now`; or
    /// the names of those not held (none when `names` is empty and the file is not held).
    pub(crate) fn columns(&self, file: &FileKey, names: &[&str], now: u64) -> Result<(usize, Vec<ArrayRef>), Vec<String>> {
        let mut state = self.lock();
        let Some(held) = state.files.get_mut(file) else {
            return Err(names.iter().map(|n| n.to_string()).collect());
        };
        let mut arrays = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for name in names {
            match held.columns.get_mut(*name) {
                Some(column) => {
                    column.last_read = now;
                    arrays.push(Arc::clone(&column.array));
                }
                None => missing.push(name.to_string()),
            }
        }
        if missing.is_empty() {
            Ok((held.rows, arrays))
        } else {
            Err(missing)
        }
    }

    /// The columns scans of `store`'s table have read, if any has.
    pub(crate) fn wanted(&self, store: &str) -> Option<Vec<String>> {
        self.lock().wanted.get(store).map(|names| names.iter().cloned().collect())
    }

    /// Of `names`, those the caller should decode for `file`: not held, not being decoded.
    /// Up front (`evicting` false), none once the budget is spent.
    pub(crate) fn claim(&self, file: &FileKey, names: &[String], evicting: bool) -> Vec<String> {
        let mut state = self.lock();
        if !evicting && state.used_bytes >= self.budget_bytes {
            return Vec::new();
        }
        let mut claimed = Vec::new();
        let clock = state.clock;
        for name in names {
            let held = state.files.get(file).is_some_and(|held| held.columns.contains_key(name));
            let key = (file.clone(), name.clone());
            let refused = state.refused.get(&key).is_some_and(|&at| clock < at + RETRY_AFTER_SCANS);
            if !held && !refused && state.loading.insert(key) {
                claimed.push(name.clone());
            }
        }
        claimed
    }

    /// Gives claimed columns back undecoded (reading the file failed).
    pub(crate) fn release(&self, file: &FileKey, names: &[String]) {
        let mut state = self.lock();
        for name in names {
            state.loading.remove(&(file.clone(), name.clone()));
        }
    }

    /// Keeps `file`'s decoded columns (of its `rows`) if they fit. `asked_at`: the tick of the
    /// scan that asked for them, if one did: columns not read since then make room, and these
    /// count as read then. Up front (`None`), they only take what is left of the budget.
    pub(crate) fn insert(&self, file: &FileKey, rows: usize, columns: Vec<(String, ArrayRef)>, asked_at: Option<u64>) {
        let mut state = self.lock();
        for (name, _) in &columns {
            state.loading.remove(&(file.clone(), name.clone()));
        }
        let sized: Vec<(String, ArrayRef, usize)> = columns
            .into_iter()
            .map(|(name, array)| {
                let bytes = array.get_array_memory_size();
                (name, array, bytes)
            })
            .collect();
        let bytes: usize = sized.iter().map(|c| c.2).sum();
        let fits = match asked_at {
            Some(since) => state.make_room(bytes, self.budget_bytes, since),
            None => state.used_bytes + bytes <= self.budget_bytes,
        };
        if !fits {
            if asked_at.is_some() {
                let clock = state.clock;
                for (name, ..) in sized {
                    state.refused.insert((file.clone(), name), clock);
                }
            }
            return;
        }
        let last_read = asked_at.unwrap_or(NEVER_READ);
        for (name, array, bytes) in sized {
            let held = state.files.entry(file.clone()).or_insert_with(|| DecodedFile {
                rows,
                columns: HashMap::new(),
            });
            let replaced = held.columns.insert(name.clone(), Column { array, bytes, last_read });
            state.refused.remove(&(file.clone(), name));
            state.used_bytes += bytes;
            if let Some(old) = replaced {
                state.used_bytes -= old.bytes;
            }
        }
    }

    /// Follows `store`'s newest snapshot, whose files are `live`: forgets the files a commit
    /// removed, and returns those not seen in an earlier snapshot.
    pub(crate) fn follow_snapshot(&self, store: &str, live: &HashSet<Path>) -> HashSet<Path> {
        let mut state = self.lock();
        let mut freed = 0;
        state.files.retain(|(s, path), held| {
            let keep = s != store || live.contains(path);
            if !keep {
                freed += held.columns.values().map(|c| c.bytes).sum::<usize>();
            }
            keep
        });
        state.used_bytes -= freed;
        state.refused.retain(|((s, path), _), _| s != store || live.contains(path));
        let seen = state.seen.insert(store.to_string(), live.clone()).unwrap_or_default();
        live.difference(&seen).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn file(name: &str) -> FileKey {
        ("file:///lake/t/".to_string(), Path::from(name))
    }

    fn ints(n: usize) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(0..n as i64))
    }

    #[test]
    fn columns_read_since_a_request_stay_and_never_read_ones_make_room_first() {
        let size = ints(1000).get_array_memory_size();
        // Room for three columns.
        let cache = DecodedFiles::new(3 * size + size / 2).unwrap();
        let (a, b) = (file("a.parquet"), file("b.parquet"));
        // Up front: two columns of `a`, then a third, then no more room.
        assert_eq!(cache.claim(&a, &["x".into(), "y".into(), "z".into()], false), vec!["x", "y", "z"]);
        cache.insert(&a, 1000, vec![("x".into(), ints(1000)), ("y".into(), ints(1000)), ("z".into(), ints(1000))], None);
        assert_eq!(cache.used_bytes(), 3 * size);
        assert_eq!(cache.claim(&b, &["x".into()], false), vec!["x"]);
        cache.insert(&b, 1000, vec![("x".into(), ints(1000))], None);
        assert_eq!(cache.used_bytes(), 3 * size, "up front, a column past the budget is not kept");

        // A scan reads `a.x`, and asks for `b.x` and `b.y`.
        let now = cache.scan_started("file:///lake/t/", &["x", "y"]);
        assert_eq!(cache.columns(&a, &["x"], now).unwrap().1.len(), 1);
        assert_eq!(cache.columns(&b, &["x", "y"], now).unwrap_err(), vec!["x", "y"]);
        assert_eq!(cache.wanted("file:///lake/t/").unwrap(), vec!["x", "y"]);
        assert_eq!(cache.claim(&b, &["x".into(), "y".into()], true), vec!["x", "y"]);
        assert!(cache.claim(&b, &["x".into()], true).is_empty(), "being decoded: not claimed twice");
        cache.insert(&b, 1000, vec![("x".into(), ints(1000)), ("y".into(), ints(1000))], Some(now));

        // `a.y` and `a.z` were never read: they made room; `a.x`, read by the scan, stayed.
        assert_eq!(cache.used_bytes(), 3 * size);
        assert!(cache.columns(&a, &["x"], now).is_ok());
        assert_eq!(cache.columns(&a, &["y", "z"], now).unwrap_err(), vec!["y", "z"]);
        assert!(cache.columns(&b, &["x", "y"], now).is_ok());

        // A request that cannot fit without evicting what its own scan read keeps nothing.
        let later = cache.tick();
        for (f, c) in [(&a, "x"), (&b, "x"), (&b, "y")] {
            assert!(cache.columns(f, &[c], later).is_ok());
        }
        assert_eq!(cache.claim(&a, &["y".into()], true), vec!["y"]);
        cache.insert(&a, 1000, vec![("y".into(), ints(1000))], Some(later));
        assert_eq!(cache.used_bytes(), 3 * size);
        assert!(cache.columns(&a, &["y"], later).is_err());
        assert!(cache.claim(&a, &["y".into()], true).is_empty(), "refused: not decoded again at once");
        for _ in 0..RETRY_AFTER_SCANS {
            cache.tick();
        }
        assert_eq!(cache.claim(&a, &["y".into()], true), vec!["y"], "asked for again after {RETRY_AFTER_SCANS} scans");
        cache.release(&a, &["y".into()]);

        // Least recently read first: every column was read at `later`, `b`'s again at `last`;
        // a request made after both takes `a.x`'s room.
        let last = cache.tick();
        assert!(cache.columns(&b, &["x", "y"], last).is_ok());
        assert_eq!(cache.claim(&a, &["y".into()], true), vec!["y"]);
        cache.insert(&a, 1000, vec![("y".into(), ints(1000))], Some(last + 1));
        assert!(cache.columns(&a, &["x"], last).is_err());
        assert!(cache.columns(&a, &["y"], last).is_ok());
        assert!(cache.columns(&b, &["x", "y"], last).is_ok());

        // A commit that removes `b` frees its columns; `a` was seen in no earlier snapshot.
        let live = HashSet::from([Path::from("a.parquet")]);
        assert_eq!(cache.follow_snapshot("file:///lake/t/", &live), live);
        assert_eq!(cache.used_bytes(), size);
        assert!(cache.follow_snapshot("file:///lake/t/", &live).is_empty(), "no new file");
    }
}
