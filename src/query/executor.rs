//! Where queries run: a Tokio runtime of their own, apart from the server's. A query that
//! keeps a thread busy (a long scalar call does not yield) holds one of these workers, never
//! one of the server's, so sign-ins, metadata calls and other queries keep being answered, and
//! a timeout fires at its deadline. The workers outnumber the queries allowed at once, so a
//! query stuck in one call cannot keep the others from being scheduled.

use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use futures::{Stream, StreamExt};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The stack of each query thread: planning, optimising and running a plan recurse over
/// its expressions, up to [`super::sql_guard::DEFAULT_MAX_EXPRESSION_DEPTH`] levels (more
/// with a configured depth). Reserved, not used: pages are only touched as deep as a query
/// goes.
pub const QUERY_THREAD_STACK_BYTES: usize = 64 << 20;

/// The query runtime; dropping it stops its queries at their next yield point.
#[derive(Debug)]
pub struct QueryExecutor {
    runtime: Option<Runtime>,
}

impl QueryExecutor {
    /// A runtime with `workers` threads named `cclake-query`.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("cclake-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    fn handle(&self) -> &Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }

    /// Runs `work` (planning a statement) on the query runtime, on its large stacks and
    /// apart from the server's threads. Dropping the returned future (a caller's timeout)
    /// stops the work at its next yield point.
    pub async fn run<T: Send + 'static>(&self, work: impl std::future::Future<Output = T> + Send + 'static) -> Result<T, tokio::task::JoinError> {
        struct AbortOnDrop<T>(JoinHandle<T>);
        impl<T> Drop for AbortOnDrop<T> {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(self.handle().spawn(work));
        (&mut task.0).await
    }

    /// Optimizes, plans and runs `df` on the query runtime. The stream yields its batches
    /// (or the error that ended it); dropping the stream stops the query at its next yield
    /// point. `held` (a concurrency permit) is released when the query's work has stopped,
    /// not when the client stopped waiting.
    pub fn execute<H: Send + 'static>(&self, df: DataFrame, held: H) -> QueryStream {
        // Two batches in flight: the query runs ahead of a slow client by no more.
        let (sender, receiver) = mpsc::channel(2);
        let (started, start) = oneshot::channel();
        let task = self.handle().spawn(async move {
            let _held = held;
            let mut stream = match super::session::execute_in_own_pool(df).await {
                Ok(stream) => {
                    let _ = started.send(Ok(()));
                    stream
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        QueryStream { receiver, start: Some(start), task }
    }
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which async code may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The batches of a query running on the query runtime; dropping it cancels the query.
#[derive(Debug)]
pub struct QueryStream {
    receiver: mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    start: Option<oneshot::Receiver<Result<(), DataFusionError>>>,
    task: JoinHandle<()>,
}

impl QueryStream {
    /// Waits until the query is planned and running, or failed to start (a planning error,
    /// a constant folded past the memory limit).
    pub async fn started(&mut self) -> Result<(), DataFusionError> {
        match self.start.take() {
            Some(start) => start
                .await
                .unwrap_or_else(|_| Err(DataFusionError::Execution("the query stopped before it started".into()))),
            None => Ok(()),
        }
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
