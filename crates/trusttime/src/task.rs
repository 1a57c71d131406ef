//! Spawning tasks. Every task is boxed to one future type per output type, so tokio's task
//! machinery (its cell, harness, waking and joining: about 3.5 KB of code per future type) is
//! compiled once instead of once for every `async` block that is spawned. On a device the
//! daemon's resident memory is mostly its own code, paged in 64 KiB at a time
//! (docs/BENCHMARKS.md); a box costs one allocation per task. A leaf: imports nothing from the
//! crate.

use std::future::Future;
use std::pin::Pin;

/// A spawnable future, boxed.
pub type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `f`, boxed: for `JoinSet::spawn` and anything else that takes a future to run as a task.
pub fn boxed<F>(f: F) -> Boxed<F::Output>
where
    F: Future + Send + 'static,
{
    Box::pin(f)
}

/// `tokio::spawn` of `f`, boxed.
pub fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[allow(clippy::disallowed_methods)] // the one place tasks are spawned
    tokio::spawn(boxed(f))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_boxed_task_runs_and_returns_its_output() {
        let h = super::spawn(async { 6 * 7 });
        assert_eq!(h.await.unwrap(), 42);
        let mut set = tokio::task::JoinSet::new();
        set.spawn(super::boxed(async { "done" }));
        assert_eq!(set.join_next().await.unwrap().unwrap(), "done");
    }
}
