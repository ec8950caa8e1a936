//! Waiting for something that happens in another task or process.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long anything in a test may take to happen. Generous: a loaded CI
/// machine is slow, and a test must not depend on the machine's speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Poll `check` every 10 ms until it is true; panic naming `what` after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_until`] for code outside a runtime (a child process, a file).
pub fn wait_until_blocking(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
