//! The one way async code runs blocking kernel and file work (cgroup writes that wait for
//! the kernel, removals that retry, fsyncs): on tokio's blocking pool, never on a runtime
//! thread.

/// Runs `work` on the blocking pool and returns what it returns; a panic in it is resumed
/// here, so it reaches the caller's task as if the work had run inline. The caller's span
/// goes with it, so what it logs names the container the call is about.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => panic!("blocking work was cancelled: the runtime is shutting down"),
    }
}
