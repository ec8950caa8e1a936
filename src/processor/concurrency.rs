//! Adaptive send concurrency, one limit per channel's provider.
//!
//! How many provider calls may be in flight is found, not configured: the
//! limit grows while every slot is busy and calls succeed (doubling per
//! round trip at first, then by one per round trip), and shrinks by 30 %
//! when the provider pushes back (429, a timeout, a 5xx or a broken
//! connection). At most one decrease per round trip: the calls already in
//! flight when the limit came down do not bring it down again.
//!
//! Latency tells the rest: more calls in flight only help while answers
//! come as fast as they did with few. The limit stops growing once the
//! smoothed call time is 1.5 times the lowest seen lately (the provider, or
//! this machine, is queueing them), and gives back one slot per round trip
//! above three times. So a 300 ms provider gets the hundreds of calls in
//! flight it takes to reach its rate, a fast one on the same machine only
//! as many as make it faster, a provider that starts refusing gets fewer,
//! and `*_CONCURRENCY`, when set, is the ceiling.
//!
//! [`Window`] is the arithmetic alone (tested without a runtime);
//! [`AdaptiveLimit`] applies it to a semaphore.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where the limit starts.
pub(super) const INITIAL_CONCURRENCY: usize = 16;

/// How far one push-back brings the limit down.
const DECREASE: f64 = 0.7;

/// Call time over the lowest seen above which the limit stops growing,
/// and above which it shrinks.
const HOLD_ABOVE: f64 = 1.5;
const SHRINK_ABOVE: f64 = 3.0;

/// Calls per period of the lowest call time: the lowest of this period
/// and the last one is the baseline (so it follows a provider that got slower).
const PERIOD: u32 = 1000;

/// Below this, call times are noise: a 0.2 ms call is not "five times
/// faster" than a 1 ms one.
const LATENCY_FLOOR: f64 = 0.001;

/// The limit's arithmetic: a congestion window as TCP keeps one.
#[derive(Debug, Clone)]
pub(super) struct Window {
    /// The limit, fractional between whole steps.
    size: f64,
    /// Below this the window doubles per round trip; above, it grows by one.
    threshold: f64,
    min: f64,
    max: f64,
    /// Bumped at each decrease: signals from calls started before it are
    /// about the old limit and do not count again.
    epoch: u64,
    /// Smoothed call time (seconds; 1/16 of each new call).
    smoothed: Option<f64>,
    /// The lowest call time of this period, and of the last.
    lowest: f64,
    lowest_before: f64,
    calls: u32,
}

impl Window {
    pub(super) fn new(initial: usize, min: usize, max: usize) -> Window {
        let (min, max) = (min.max(1) as f64, max.max(1) as f64);
        Window {
            size: (initial as f64).clamp(min, max),
            threshold: max,
            min: min.min(max),
            max,
            epoch: 0,
            smoothed: None,
            lowest: f64::INFINITY,
            lowest_before: f64::INFINITY,
            calls: 0,
        }
    }

    /// The whole number of calls allowed in flight.
    pub(super) fn limit(&self) -> usize {
        self.size.floor() as usize
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A call succeeded in `latency` seconds. `saturated`: every slot was
    /// taken when it started, so the limit was what held sends back (an
    /// idle limit does not grow).
    pub(super) fn on_success(&mut self, saturated: bool, latency: f64) {
        let smoothed = match self.smoothed {
            Some(s) => s + (latency - s) / 16.0,
            None => latency,
        };
        self.smoothed = Some(smoothed);
        self.lowest = self.lowest.min(latency);
        self.calls += 1;
        if self.calls >= PERIOD {
            self.lowest_before = std::mem::replace(&mut self.lowest, f64::INFINITY);
            self.calls = 0;
        }
        if !saturated {
            return;
        }
        let baseline = self.lowest.min(self.lowest_before).max(LATENCY_FLOOR);
        let queueing = smoothed / baseline;
        if queueing > SHRINK_ABOVE {
            self.size = (self.size - 1.0 / self.size).max(self.min);
        } else if queueing <= HOLD_ABOVE {
            let step = if self.size < self.threshold {
                1.0
            } else {
                1.0 / self.size
            };
            self.size = (self.size + step).min(self.max);
        }
    }

    /// The provider pushed back on a call started in `epoch`.
    pub(super) fn on_congestion(&mut self, epoch: u64) {
        if epoch != self.epoch {
            return; // already answered
        }
        self.size = (self.size * DECREASE).max(self.min);
        self.threshold = self.size;
        self.epoch += 1;
    }
}

/// A semaphore whose size follows a [`Window`].
#[derive(Debug)]
pub(super) struct AdaptiveLimit {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: Window,
    /// Permits that exist (taken or free).
    issued: usize,
    /// Permits to retire as they come back (the limit came down while they were taken).
    debt: usize,
}

/// One call's slot; give it back with [`Slot::done`] (dropping it counts as
/// a call that told nothing about the provider).
#[derive(Debug)]
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<AdaptiveLimit>,
    epoch: u64,
    saturated: bool,
}

/// What a call told about the provider's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Signal {
    /// Answered (sent or refused for the message's own reasons) in this
    /// many seconds.
    Fine(f64),
    /// Pushed back: too many requests, a timeout, a 5xx, a broken connection.
    Congested,
    /// Nothing learned (e.g. the call was not made).
    None,
}

impl AdaptiveLimit {
    pub(super) fn new(window: Window) -> Arc<AdaptiveLimit> {
        let issued = window.limit();
        Arc::new(AdaptiveLimit {
            semaphore: Arc::new(Semaphore::new(issued)),
            state: Mutex::new(State {
                window,
                issued,
                debt: 0,
            }),
        })
    }

    pub(super) fn limit(&self) -> usize {
        self.lock().window.limit()
    }

    /// Calls holding a slot now.
    pub(super) fn in_use(&self) -> usize {
        let state = self.lock();
        (state.issued - state.debt).saturating_sub(self.semaphore.available_permits())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot.
    pub(super) async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("send slots are never closed");
        let saturated = self.semaphore.available_permits() == 0;
        Slot {
            permit: Some(permit),
            limit: self.clone(),
            epoch: self.lock().window.epoch(),
            saturated,
        }
    }

    fn finish(&self, permit: OwnedSemaphorePermit, epoch: u64, saturated: bool, signal: Signal) {
        let mut state = self.lock();
        match signal {
            Signal::Fine(latency) => state.window.on_success(saturated, latency),
            Signal::Congested => state.window.on_congestion(epoch),
            Signal::None => {}
        }
        if state.debt > 0 {
            state.debt -= 1;
            state.issued -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        let target = state.window.limit();
        if target > state.issued {
            let mut add = target - state.issued;
            let cancelled = add.min(state.debt);
            state.debt -= cancelled;
            add -= cancelled;
            state.issued += add + cancelled;
            self.semaphore.add_permits(add);
        } else if target + state.debt < state.issued {
            let excess = state.issued - state.debt - target;
            let forgotten = self.semaphore.forget_permits(excess);
            state.issued -= forgotten;
            state.debt += excess - forgotten;
        }
    }
}

impl Slot {
    pub(super) fn done(mut self, signal: Signal) {
        if let Some(p) = self.permit.take() {
            self.limit.finish(p, self.epoch, self.saturated, signal);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.limit.finish(p, self.epoch, self.saturated, Signal::None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_doubles_then_grows_by_one_per_round_trip() {
        let mut w = Window::new(16, 1, 1000);
        // One round trip at 16: 16 successes, all saturated.
        for _ in 0..16 {
            w.on_success(true, 0.3);
        }
        assert_eq!(w.limit(), 32);
        // Push back: down 30 %, and from then on linear growth.
        w.on_congestion(w.epoch());
        assert_eq!(w.limit(), 22); // 22.4
        for _ in 0..22 {
            w.on_success(true, 0.3);
        }
        assert_eq!(w.limit(), 23, "one round trip adds about one slot"); // 23.37
        for _ in 0..30 {
            w.on_success(true, 0.3);
        }
        assert_eq!(w.limit(), 24);
    }

    #[test]
    fn grows_only_while_answers_come_as_fast_as_with_few_calls() {
        let mut w = Window::new(16, 1, 1000);
        // A fast provider: 2 ms per call at 16 in flight.
        for _ in 0..16 {
            w.on_success(true, 0.002);
        }
        assert_eq!(w.limit(), 32);
        // More calls in flight, and each takes longer (queueing): above 1.5
        // times the lowest call time the limit holds.
        for _ in 0..200 {
            w.on_success(true, 0.0045);
        }
        let held = w.limit();
        for _ in 0..200 {
            w.on_success(true, 0.0045);
        }
        assert_eq!(w.limit(), held);
        // Far slower than the lowest: it gives slots back.
        for _ in 0..400 {
            w.on_success(true, 0.02);
        }
        assert!(w.limit() < held, "{} < {held}", w.limit());
        // Sub-millisecond differences are noise: 0.1 ms vs 0.5 ms still grows.
        let mut w = Window::new(16, 1, 1000);
        w.on_success(false, 0.0001);
        for _ in 0..16 {
            w.on_success(true, 0.0005);
        }
        assert_eq!(w.limit(), 32);
    }

    #[test]
    fn one_decrease_per_round_trip_and_never_below_the_floor() {
        let mut w = Window::new(100, 2, 1000);
        let epoch = w.epoch();
        // Fifty calls in flight all time out: the limit comes down once.
        for _ in 0..50 {
            w.on_congestion(epoch);
        }
        assert_eq!(w.limit(), 70);
        for _ in 0..40 {
            w.on_congestion(w.epoch());
        }
        assert_eq!(w.limit(), 2);
    }

    #[test]
    fn an_idle_limit_does_not_grow_and_the_ceiling_holds() {
        let mut w = Window::new(16, 1, 40);
        for _ in 0..1000 {
            w.on_success(false, 0.3);
        }
        assert_eq!(w.limit(), 16);
        for _ in 0..1000 {
            w.on_success(true, 0.3);
        }
        assert_eq!(w.limit(), 40);
        assert_eq!(Window::new(10, 10, 10).limit(), 10);
    }

    #[tokio::test]
    async fn the_semaphore_follows_the_window() {
        let limit = AdaptiveLimit::new(Window::new(4, 1, 100));
        let slots: Vec<Slot> = futures_join(&limit, 4).await;
        assert_eq!(limit.semaphore.available_permits(), 0);
        // All four were taken with the limit full; each success grows it.
        for s in slots {
            s.done(Signal::Fine(0.01));
        }
        assert_eq!(limit.limit(), 5); // only the last start saw every slot taken
        assert_eq!(limit.semaphore.available_permits(), 5);

        // Five in flight, then a push-back: 5 → 3 (floor of 3.5); two of the
        // slots still out are retired as they come back.
        let mut slots = futures_join(&limit, 5).await;
        slots.pop().expect("five").done(Signal::Congested);
        assert_eq!(limit.limit(), 3);
        for s in slots {
            s.done(Signal::None);
        }
        assert_eq!(limit.semaphore.available_permits(), 3);
        let state = limit.lock();
        assert_eq!((state.issued, state.debt), (3, 0));
    }

    async fn futures_join(limit: &Arc<AdaptiveLimit>, n: usize) -> Vec<Slot> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(limit.acquire().await);
        }
        out
    }
}
