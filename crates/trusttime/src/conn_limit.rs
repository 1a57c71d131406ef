//! Bounds the connections a listener holds open, so that no local user or neighbour can
//! exhaust the daemon's file descriptors with idle connections.
//!
//! Each connection runs as a task under one deadline for its whole exchange. When
//! [`Slots::max`] are open, a new connection evicts the oldest one held by the peer (uid or
//! address) holding the most: the flooder loses its own connections first, accept never
//! stops, and nothing is logged above debug per connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;

/// The open connections of one listener.
pub struct Slots<K> {
    max: usize,
    within: Duration,
    open: Arc<Mutex<Open<K>>>,
}

impl<K> std::fmt::Debug for Slots<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("max", &self.max)
            .field("within", &self.within)
            .finish_non_exhaustive()
    }
}

struct Open<K> {
    next: u64,
    tasks: BTreeMap<u64, (K, AbortHandle)>,
}

/// Removes a finished connection from the table.
struct Leave<K> {
    id: u64,
    open: Arc<Mutex<Open<K>>>,
}

impl<K> Drop for Leave<K> {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks
            .remove(&self.id);
    }
}

impl<K: Eq + Clone + Send + 'static> Slots<K> {
    /// At most `max` (at least 1) connections at once, each given `within` for its whole
    /// exchange.
    #[must_use]
    pub fn new(max: usize, within: Duration) -> Self {
        Slots {
            max: max.max(1),
            within,
            open: Arc::new(Mutex::new(Open {
                next: 0,
                tasks: BTreeMap::new(),
            })),
        }
    }

    /// The most connections held at once.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many connections are open now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks
            .len()
    }

    /// True when no connection is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `conn` (which owns the connection) for `peer`, first evicting a connection when
    /// all slots are taken. The connection is dropped, and so closed, when `conn` ends, its
    /// deadline passes or it is evicted.
    pub fn run<F>(&self, peer: K, conn: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let within = self.within;
        let evicted = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let evicted = if open.tasks.len() >= self.max {
                let victim = Self::victim(&open.tasks);
                victim.and_then(|id| open.tasks.remove(&id))
            } else {
                None
            };
            let id = open.next;
            open.next += 1;
            let leave = Leave {
                id,
                open: Arc::clone(&self.open),
            };
            // The table stays locked until the task is in it, so its `Leave` cannot run first.
            let task = crate::task::spawn(async move {
                let _leave = leave;
                if tokio::time::timeout(within, conn).await.is_err() {
                    tracing::debug!("connection closed: no complete exchange within {within:?}");
                }
            });
            open.tasks.insert(id, (peer, task.abort_handle()));
            evicted
        };
        if let Some((_, task)) = evicted {
            tracing::debug!("connection evicted: all slots taken");
            task.abort();
        }
    }

    /// The oldest connection of the peer holding the most.
    fn victim(tasks: &BTreeMap<u64, (K, AbortHandle)>) -> Option<u64> {
        let mut best: Option<(usize, u64)> = None;
        for (id, (peer, _)) in tasks {
            let held = tasks.values().filter(|(p, _)| p == peer).count();
            // Ids ascend, so the first id seen for a count is the oldest.
            if best.map_or(true, |(n, _)| held > n) {
                best = Some((held, *id));
            }
        }
        best.map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_flooder_loses_its_oldest_connection_and_others_keep_theirs() {
        let slots = Slots::new(3, Duration::from_secs(60));
        let (tx_a, mut rx_a) = tokio::sync::mpsc::channel::<&str>(8);
        // One connection of peer 1 and two of peer 2, all idle.
        for (peer, name) in [(1u32, "a"), (2, "b1"), (2, "b2")] {
            let tx = tx_a.clone();
            slots.run(peer, async move {
                let _closed = Closed(tx, name);
                std::future::pending::<()>().await;
            });
        }
        tokio::task::yield_now().await;
        assert_eq!(slots.len(), 3);
        // A fourth connection evicts peer 2's oldest.
        slots.run(3, async {});
        assert_eq!(rx_a.recv().await, Some("b1"));
        tokio::task::yield_now().await;
        // Peer 1's connection and peer 2's newer one are still open.
        assert!(rx_a.try_recv().is_err());
        assert!(slots.len() <= 3);
    }

    #[tokio::test]
    async fn a_connection_ends_at_its_deadline() {
        let slots = Slots::new(4, Duration::from_millis(50));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&str>(1);
        slots.run(1u32, async move {
            let _closed = Closed(tx, "idle");
            std::future::pending::<()>().await;
        });
        assert_eq!(rx.recv().await, Some("idle"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(slots.is_empty());
    }

    /// Says `name` on the channel when dropped.
    struct Closed(tokio::sync::mpsc::Sender<&'static str>, &'static str);

    impl Drop for Closed {
        fn drop(&mut self) {
            let _ = self.0.try_send(self.1);
        }
    }
}
