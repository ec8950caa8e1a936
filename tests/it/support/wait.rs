//! Waiting for something that happens in another task or process.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long anything in a test may take to happen. Generous: a loaded CI
/// machine is slow, and a test must not depend on the machine's speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Poll `check` every 10 ms until it is true; panic naming `what` after [`PATIENCE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_within(what, PATIENCE, check).await
}

/// [`wait_until`] for something that takes long (a big queue draining).
pub(crate) async fn wait_until_within<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_until_within`] for code outside a runtime (a child process, a file).
pub(crate) fn wait_until_blocking(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
