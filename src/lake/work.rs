//! How the writer shares CPU work out: the cores it may use, work moved off the runtime's
//! threads, and loads balanced between a few workers.

use deltalake::DeltaTableError;

use super::error::WriteFailure;
use crate::model::LakeTable;

/// The cores this process may use (looked up once: it reads cgroup files).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `work` for `table`, started now on a blocking thread (sorting rows out is CPU work, kept
/// off the runtime's threads); a panic in it is a [`WriteFailure::Task`].
pub(crate) fn blocking<T: Send + 'static>(
    table: LakeTable,
    work: impl FnOnce() -> Result<T, DeltaTableError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, DeltaTableError>> {
    let running = tokio::task::spawn_blocking(work);
    async move { running.await.map_err(WriteFailure::task("sorting out rows", table))? }
}

/// `items` with their loads shared out between at most `workers`: the largest first, each
/// to the worker with the least so far (close to even without an exact search).
pub(crate) fn share_out<T>(mut items: Vec<(usize, T)>, workers: usize) -> Vec<Vec<T>> {
    items.sort_by_key(|(load, _)| std::cmp::Reverse(*load));
    let mut shares: Vec<(usize, Vec<T>)> = (0..workers.max(1)).map(|_| (0, Vec::new())).collect();
    for (load, item) in items {
        if let Some(share) = shares.iter_mut().min_by_key(|(total, _)| *total) {
            share.0 += load;
            share.1.push(item);
        }
    }
    shares.into_iter().map(|(_, items)| items).filter(|items| !items.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::share_out;

    #[test]
    fn the_largest_go_first_each_to_the_least_loaded_worker() {
        // 9 -> a, 5 -> b, 4 -> b (5 < 9), 3 -> a (9 = 9: the first), 1 -> b.
        let shares = share_out(vec![(3, 'd'), (9, 'a'), (1, 'e'), (5, 'b'), (4, 'c')], 2);
        assert_eq!(shares, vec![vec!['a', 'd'], vec!['b', 'c', 'e']]);
        // Fewer items than workers: no empty share.
        assert_eq!(share_out(vec![(1, 'x')], 4), vec![vec!['x']]);
    }
}
