//! Look-ahead: objects are read and parsed ahead of the commits, within bounds.

/// How far ahead a pass starts objects: always `objects`, more (up to 64) while the
/// started ones that wait add up to under `bytes`.
pub(crate) struct LookAhead {
    pub(crate) objects: usize,
    pub(crate) bytes: u64,
}

impl LookAhead {
    /// `start` of each item, in order, each called ahead of its turn as far as allowed.
    pub(crate) fn started<'a, T: 'a, S: 'a>(
        self,
        items: Vec<T>,
        size: impl Fn(&T) -> u64 + 'a,
        start: impl FnMut(T) -> S + 'a,
    ) -> impl futures::Stream<Item = S> + 'a {
        const MOST: usize = 64;
        let state = (items.into_iter().peekable(), std::collections::VecDeque::<(S, u64)>::new(), 0u64, start);
        futures::stream::unfold(state, move |(mut items, mut started, mut bytes, mut start)| {
            while let Some(next) = items.peek() {
                let n = size(next);
                let room = started.len() < self.objects || (started.len() < MOST && bytes + n <= self.bytes);
                if !room {
                    break;
                }
                let Some(item) = items.next() else { break };
                bytes += n;
                started.push_back((start(item), n));
            }
            let next = started.pop_front().map(|(s, n)| {
                bytes -= n;
                (s, (items, started, bytes, start))
            });
            futures::future::ready(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LookAhead;
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn small_objects_are_started_behind_a_large_one_within_the_budget_and_come_out_in_order() {
        // Sizes: one large object, then small ones; at least 2 are started, more while the
        // started ones that wait stay within 10 bytes.
        let sizes = [100u64, 3, 3, 3, 3, 50, 1];
        let started = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&started);
        let ahead = LookAhead { objects: 2, bytes: 10 };
        let mut stream = Box::pin(ahead.started((0..sizes.len()).collect(), |i| sizes[*i], move |i| {
            log.lock().unwrap().push(i);
            i
        }));
        let first = futures::executor::block_on(stream.next());
        assert_eq!(first, Some(0));
        // 0 and 1 by count (103 bytes), nothing more: the budget is spent.
        assert_eq!(*started.lock().unwrap(), vec![0, 1]);
        let second = futures::executor::block_on(stream.next());
        assert_eq!(second, Some(1));
        // Before 1 is taken: 1 and 2 wait (2 by count, 6 bytes), 3 fits (9 bytes), 4 would
        // make 12.
        assert_eq!(*started.lock().unwrap(), vec![0, 1, 2, 3]);
        let rest: Vec<usize> = futures::executor::block_on(stream.collect());
        assert_eq!(rest, vec![2, 3, 4, 5, 6]);
        assert_eq!(*started.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
