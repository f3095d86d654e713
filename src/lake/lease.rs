//! One writer per lake: a lease held in the lake's own store.
//!
//! Delta's commit protocol serialises commits, but blind appends commute: two writers that
//! each decide "this key is new" both append it, and "latest by key" or "replace the whole
//! conversation" no longer hold. So every write to a lake (an ingest pass, a compaction, a
//! repair, creating the tables) holds the lake's writer lease, kept in the store next to the
//! tables, which works the same on a local disk and on object storage and across hosts.
//!
//! The lease is a series of generations, `_cclake/writer/<generation>.json`, each created
//! with an atomic create-if-absent ([`PutMode::Create`]: a hard link on local disk, a
//! conditional put on S3): of two writers creating the same generation, exactly one succeeds.
//! The highest generation is the lease in force.
//! - The holder rewrites its own generation every third of the TTL (a heartbeat: `beat`
//!   grows) and deletes it when it is done.
//! - A waiter reads the highest generation every poll. When its content has not changed for
//!   the holder's TTL, measured on the waiter's own clock (no clock is compared across
//!   hosts), the holder is gone (killed, its host lost): the waiter creates the next
//!   generation, which only one waiter can, and says whose lease it took over.
//! - Before each commit the holder checks that the highest generation is still its own
//!   ([`WriterLease::ensure_held`]); a holder paused past its TTL finds a newer generation
//!   and stops without committing ([`LeaseError::Lost`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::storage::{Location, StorageError};

/// The folder under the lake root holding the lease's generations.
const LEASE_FOLDER: [&str; 2] = ["_cclake", "writer"];

/// How long a writer waits for the lease and how long its lease lives unrenewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// A lease whose holder has not renewed it for this long (killed, or its host lost) is
    /// taken over. The holder renews it every third of this.
    pub ttl: Duration,
    /// How long a second writer waits for the holder to finish before giving up.
    pub wait: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(30), wait: Duration::from_secs(300) }
    }
}

/// Who holds a lease: what the generation object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// Random, per acquisition: tells this holder from any other, even in the same process.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// What the holder is doing (`ingest`, `compact`, ...).
    pub operation: String,
    /// When the lease was taken (RFC 3339, the holder's clock: for people, not for expiry).
    pub since: String,
    /// Renewals so far: a waiter sees the holder alive while this changes.
    pub beat: u64,
    pub ttl_seconds: u64,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`cclake {}` on host {} (process {}) since {}", self.operation, self.host, self.pid, self.since)
    }
}

/// Errors of taking and keeping the writer lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lake {lake} is being written by {holder}; waited {waited_seconds} s (--wait) for it to finish. Try again later, or wait longer with --wait")]
    Busy { lake: String, holder: Box<LeaseHolder>, waited_seconds: u64 },
    #[error("this writer lost the lake's writer lease (it was paused or cut off past its {ttl_seconds} s lease, and {taken_by} took the lake over): nothing more is committed; the lake is consistent, run the ingest again")]
    Lost { ttl_seconds: u64, taken_by: String },
    #[error(
        "the writer lease at {location} needs an atomic create-if-absent, which this store refuses ({source}); on S3 set AWS_CONDITIONAL_PUT=etag"
    )]
    Unsupported { location: String, source: object_store::Error },
    #[error("the writer lease at {location}: {source}")]
    Store { location: String, source: object_store::Error },
    #[error("the writer lease object {location} is not a cclake lease: {message}")]
    Corrupt { location: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The lease in force as read from the store.
#[derive(Debug, Clone)]
struct Current {
    generation: u64,
    holder: LeaseHolder,
}

/// The lease of one lake, as a holder sees it: cheap to clone into the heartbeat task.
#[derive(Debug, Clone)]
struct Seat {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    lake: String,
}

impl Seat {
    fn at(lake: &Location) -> Result<Self, LeaseError> {
        let (store, prefix) = lake.object_store()?;
        let folder = LEASE_FOLDER.iter().fold(prefix, |path, part| path.join(*part));
        Ok(Self { store, folder, lake: lake.to_string() })
    }

    fn generation_path(&self, generation: u64) -> Path {
        self.folder.clone().join(format!("{generation:020}.json"))
    }

    fn store_error(&self, source: object_store::Error) -> LeaseError {
        LeaseError::Store { location: self.folder.to_string(), source }
    }

    /// The generations present, highest last.
    async fn generations(&self) -> Result<Vec<u64>, LeaseError> {
        let listed: Vec<_> = match self.store.list(Some(&self.folder)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.store_error(e)),
        };
        let mut generations: Vec<u64> = listed
            .iter()
            .filter_map(|meta| meta.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        generations.sort_unstable();
        Ok(generations)
    }

    /// The highest generation and its holder; `None` when no lease is held. A generation
    /// deleted between the listing and the read (its holder finished) reads as the next
    /// lower one, or none.
    async fn current(&self) -> Result<Option<Current>, LeaseError> {
        let generations = self.generations().await?;
        for &generation in generations.iter().rev() {
            let path = self.generation_path(generation);
            let bytes = match self.store.get(&path).await {
                Ok(get) => get.bytes().await.map_err(|e| self.store_error(e))?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.store_error(e)),
            };
            let holder = serde_json::from_slice(&bytes)
                .map_err(|e| LeaseError::Corrupt { location: path.to_string(), message: e.to_string() })?;
            return Ok(Some(Current { generation, holder }));
        }
        Ok(None)
    }

    fn payload(&self, path: &Path, holder: &LeaseHolder) -> Result<PutPayload, LeaseError> {
        let json = serde_json::to_vec(holder).map_err(|e| LeaseError::Corrupt { location: path.to_string(), message: e.to_string() })?;
        Ok(PutPayload::from(json))
    }

    /// Creates `generation` for `holder` unless it exists: whether this call created it.
    async fn create(&self, generation: u64, holder: &LeaseHolder) -> Result<bool, LeaseError> {
        let path = self.generation_path(generation);
        let payload = self.payload(&path, holder)?;
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&path, payload, options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(source @ object_store::Error::NotImplemented { .. }) => {
                Err(LeaseError::Unsupported { location: self.folder.to_string(), source })
            }
            Err(e) => Err(self.store_error(e)),
        }
    }

    async fn overwrite(&self, generation: u64, holder: &LeaseHolder) -> Result<(), LeaseError> {
        let path = self.generation_path(generation);
        let payload = self.payload(&path, holder)?;
        self.store.put(&path, payload).await.map_err(|e| self.store_error(e))?;
        Ok(())
    }

    async fn delete(&self, generation: u64) {
        match self.store.delete(&self.generation_path(generation)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => warn!(lake = %self.lake, generation, error = %e, "cannot delete a writer lease generation"),
        }
    }

    /// Whether `generation` held by `id` is still the lease in force; the holder in force
    /// otherwise.
    async fn check(&self, generation: u64, id: &str) -> Result<Result<(), String>, LeaseError> {
        match self.current().await? {
            Some(c) if c.generation == generation && c.holder.id == id => Ok(Ok(())),
            Some(c) => Ok(Err(c.holder.to_string())),
            None => Ok(Err("another writer (the lease was released)".to_string())),
        }
    }
}

/// The writer lease of one lake, held until [`WriterLease::release`].
#[derive(Debug)]
pub struct WriterLease {
    seat: Seat,
    generation: u64,
    holder: LeaseHolder,
    ttl: Duration,
    /// Set by the heartbeat when it finds a newer generation: no commit may follow.
    lost: Arc<AtomicBool>,
    /// Stops the heartbeat.
    stop: CancellationToken,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

fn new_holder_id() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one process saw of a lake's lease over its attempts to take it: which generation
/// and holder, and since when (this process's clock) unchanged. Kept between attempts, so
/// that a writer whose attempts each wait less than the TTL (a server's scheduled passes)
/// still takes over a lease abandoned by a killed holder.
#[derive(Debug, Default)]
pub struct LeaseWatch(std::sync::Mutex<Option<(u64, LeaseHolder, Instant)>>);

impl LeaseWatch {
    fn get(&self) -> Option<(u64, LeaseHolder, Instant)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, seen: Option<(u64, LeaseHolder, Instant)>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = seen;
    }
}

impl WriterLease {
    /// Takes the writer lease of `lake` for `operation`, waiting up to `options.wait` for
    /// another writer to finish, and taking over a lease whose holder stopped renewing it.
    pub async fn acquire(lake: &Location, operation: &str, options: LeaseOptions) -> Result<Self, LeaseError> {
        Self::acquire_watching(lake, operation, options, &LeaseWatch::default()).await
    }

    /// [`Self::acquire`], remembering in `watch` what earlier attempts saw.
    pub async fn acquire_watching(lake: &Location, operation: &str, options: LeaseOptions, watch: &LeaseWatch) -> Result<Self, LeaseError> {
        let seat = Seat::at(lake)?;
        let ttl = options.ttl.max(Duration::from_millis(300));
        let holder = LeaseHolder {
            id: new_holder_id(),
            host: host_name(),
            pid: std::process::id(),
            operation: operation.to_string(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            beat: 0,
            ttl_seconds: ttl.as_secs().max(1),
        };
        let started = Instant::now();
        // The holder in force as last seen, and since when (this process's clock) it has
        // not changed.
        let mut seen: Option<(u64, LeaseHolder, Instant)> = watch.get();
        let mut said_waiting = false;
        loop {
            let next = match seat.current().await? {
                None => 1,
                Some(current) => {
                    let unchanged_since = match &seen {
                        Some((generation, holder, since)) if *generation == current.generation && *holder == current.holder => *since,
                        _ => Instant::now(),
                    };
                    let holder_ttl = Duration::from_secs(current.holder.ttl_seconds.max(1));
                    if unchanged_since.elapsed() >= holder_ttl {
                        // Said at the default level: a person running a second
                        // writer must see why it waited, and whose lease it ended.
                        warn!(
                            "the writer lease of {} held by {} was not renewed for {} s (its writer was killed or cut off): taking the lake over",
                            seat.lake,
                            current.holder,
                            holder_ttl.as_secs()
                        );
                        current.generation + 1
                    } else {
                        watch.set(Some((current.generation, current.holder.clone(), unchanged_since)));
                        if started.elapsed() >= options.wait {
                            return Err(LeaseError::Busy {
                                lake: seat.lake.clone(),
                                holder: Box::new(current.holder),
                                waited_seconds: started.elapsed().as_secs(),
                            });
                        }
                        if !said_waiting {
                            said_waiting = true;
                            warn!(
                                "waiting for the lake {}: it is being written by {} (up to {} s, --wait)",
                                seat.lake,
                                current.holder,
                                options.wait.as_secs()
                            );
                        }
                        seen = Some((current.generation, current.holder, unchanged_since));
                        let poll = (ttl / 6).clamp(Duration::from_millis(50), Duration::from_secs(1));
                        tokio::time::sleep(poll.min(options.wait.saturating_sub(started.elapsed()))).await;
                        continue;
                    }
                }
            };
            if seat.create(next, &holder).await? {
                watch.set(None);
                // Earlier generations are over: their holders finished or lost the lease.
                for old in seat.generations().await?.into_iter().filter(|g| *g < next) {
                    seat.delete(old).await;
                }
                info!(lake = %seat.lake, generation = next, "writer lease taken");
                return Ok(Self::held(seat, next, holder, ttl));
            }
            // Another writer created that generation first: look again.
        }
    }

    fn held(seat: Seat, generation: u64, holder: LeaseHolder, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let heartbeat = tokio::spawn(Self::renew(seat.clone(), generation, holder.clone(), ttl, Arc::clone(&lost), stop.clone()));
        Self { seat, generation, holder, ttl, lost, stop, heartbeat: Some(heartbeat) }
    }

    /// Renews the lease every third of its TTL while it is this holder's.
    async fn renew(seat: Seat, generation: u64, mut holder: LeaseHolder, ttl: Duration, lost: Arc<AtomicBool>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(ttl / 3) => {}
            }
            match seat.check(generation, &holder.id).await {
                Ok(Ok(())) => {
                    holder.beat += 1;
                    if let Err(e) = seat.overwrite(generation, &holder).await {
                        warn!(lake = %seat.lake, error = %e, "cannot renew the writer lease; retrying");
                    }
                }
                Ok(Err(taken_by)) => {
                    warn!(lake = %seat.lake, taken_by = %taken_by, "the writer lease was taken over: this writer commits nothing more");
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => warn!(lake = %seat.lake, error = %e, "cannot check the writer lease; retrying"),
            }
        }
    }

    /// Succeeds only while this writer's generation is the lease in force: called before
    /// every commit, so that a writer paused past its TTL commits nothing.
    pub async fn ensure_held(&self) -> Result<(), LeaseError> {
        let lost = |taken_by: String| LeaseError::Lost { ttl_seconds: self.ttl.as_secs().max(1), taken_by };
        if self.lost.load(Ordering::SeqCst) {
            return Err(lost("another writer".to_string()));
        }
        match self.seat.check(self.generation, &self.holder.id).await? {
            Ok(()) => Ok(()),
            Err(taken_by) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(lost(taken_by))
            }
        }
    }

    /// Who holds this lease.
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// Ends the lease: the next writer proceeds at once.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.await;
        }
        if !self.lost.load(Ordering::SeqCst) {
            if let Ok(Ok(())) = self.seat.check(self.generation, &self.holder.id).await {
                self.seat.delete(self.generation).await;
            }
        }
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        // Dropped without release (a panic, a cancelled future): the heartbeat stops, and the
        // lease expires after its TTL.
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake() -> (tempfile::TempDir, Location) {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(dir.path().to_str().unwrap(), false).unwrap();
        (dir, location)
    }

    fn options(ttl_ms: u64, wait_ms: u64) -> LeaseOptions {
        LeaseOptions { ttl: Duration::from_millis(ttl_ms), wait: Duration::from_millis(wait_ms) }
    }

    #[tokio::test]
    async fn a_second_writer_waits_then_gives_up_naming_the_holder() {
        let (_dir, lake) = lake();
        let first = WriterLease::acquire(&lake, "ingest", options(3_000, 0)).await.unwrap();
        let second = WriterLease::acquire(&lake, "compact", options(3_000, 400)).await.unwrap_err();
        match &second {
            LeaseError::Busy { holder, .. } => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.operation, "ingest");
            }
            other => panic!("expected Busy, got {other}"),
        }
        assert!(second.to_string().contains("cclake ingest"), "{second}");
        first.ensure_held().await.unwrap();
        first.release().await;
        // Released: the next writer proceeds at once.
        let third = WriterLease::acquire(&lake, "compact", options(3_000, 0)).await.unwrap();
        third.release().await;
    }

    #[tokio::test]
    async fn a_waiting_writer_proceeds_when_the_holder_releases() {
        let (_dir, lake) = lake();
        let first = WriterLease::acquire(&lake, "ingest", options(3_000, 0)).await.unwrap();
        let waiter = tokio::spawn({
            let lake = lake.clone();
            async move { WriterLease::acquire(&lake, "ingest", options(3_000, 10_000)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the second writer must wait while the first holds the lease");
        first.release().await;
        let second = waiter.await.unwrap().unwrap();
        second.ensure_held().await.unwrap();
        second.release().await;
    }

    #[tokio::test]
    async fn short_attempts_that_remember_what_they_saw_take_an_abandoned_lease_over() {
        let (_dir, lake) = lake();
        let first = WriterLease::acquire(&lake, "ingest", options(600, 0)).await.unwrap();
        first.stop.cancel();
        // Each attempt waits 100 ms, less than the 600 ms TTL: only what the attempts saw
        // together lets one of them take over.
        let watch = LeaseWatch::default();
        let mut attempts = 0;
        let second = loop {
            attempts += 1;
            assert!(attempts < 40, "never taken over");
            match WriterLease::acquire_watching(&lake, "ingest", options(600, 100), &watch).await {
                Ok(lease) => break lease,
                Err(LeaseError::Busy { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        };
        assert!(second.generation > first.generation && attempts > 2, "{attempts}");
        second.release().await;
    }

    #[tokio::test]
    async fn an_abandoned_lease_expires_and_its_holder_may_not_commit_after() {
        let (_dir, lake) = lake();
        let first = WriterLease::acquire(&lake, "ingest", options(600, 0)).await.unwrap();
        // The holder stops renewing (as a killed or paused process does).
        first.stop.cancel();
        let second = WriterLease::acquire(&lake, "ingest", options(600, 10_000)).await.unwrap();
        assert!(second.generation > first.generation);
        let refused = first.ensure_held().await.unwrap_err();
        assert!(matches!(refused, LeaseError::Lost { .. }), "{refused}");
        second.ensure_held().await.unwrap();
        // The loser's release does not end the winner's lease.
        first.release().await;
        second.ensure_held().await.unwrap();
        second.release().await;
    }

    #[tokio::test]
    async fn of_writers_racing_for_a_free_lake_exactly_one_holds_it() {
        let (_dir, lake) = lake();
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let lake = lake.clone();
                tokio::spawn(async move { WriterLease::acquire(&lake, "ingest", options(5_000, 0)).await })
            })
            .collect();
        let mut held = Vec::new();
        for racer in racers {
            if let Ok(lease) = racer.await.unwrap() {
                held.push(lease);
            }
        }
        assert_eq!(held.len(), 1);
        for lease in held {
            lease.release().await;
        }
    }
}
