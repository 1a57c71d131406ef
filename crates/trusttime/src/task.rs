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

/// `f`, boxed.
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

/// `set.spawn(f)`, boxed.
pub fn spawn_in<T: Send + 'static, F>(set: &mut tokio::task::JoinSet<T>, f: F)
where
    F: Future<Output = T> + Send + 'static,
{
    #[allow(clippy::disallowed_methods)] // the one place tasks are spawned into a set
    set.spawn(boxed(f));
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_boxed_task_runs_and_returns_its_output() {
        let h = super::spawn(async { 6 * 7 });
        assert_eq!(h.await.unwrap(), 42);
        let mut set = tokio::task::JoinSet::new();
        super::spawn_in(&mut set, async { "done" });
        assert_eq!(set.join_next().await.unwrap().unwrap(), "done");
    }
}
