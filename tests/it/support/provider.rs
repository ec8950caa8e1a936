//! A provider scripted by a closure, and a processor on a manual clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use herald::clock::{Clock, ManualClock, Random};
use herald::domain::OutgoingMessage;
use herald::processor::{Mode, Processor, ProcessorConfig, RunSummary, Shutdown};
use herald::providers::{BoxFuture, Provider, Providers, Receipt, SendError};
use herald::retry::RetryPolicy;
use herald::store::Store;

type Script = dyn Fn(&OutgoingMessage, usize) -> Result<Receipt, SendError> + Send + Sync;

/// A provider whose answer is decided by a closure of (message, call number
/// for that message, from 1); it records every call.
#[derive(Clone)]
pub struct ScriptedProvider {
    name: &'static str,
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<(i64, u32)>>>,
    delay: Duration,
}

impl ScriptedProvider {
    pub fn new(script: impl Fn(&OutgoingMessage, usize) -> Result<Receipt, SendError> + Send + Sync + 'static) -> Self {
        ScriptedProvider {
            name: "test",
            script: Arc::new(script),
            calls: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok() -> Self {
        ScriptedProvider::new(|m, _| Ok(Receipt::new(format!("T-{}", m.id))))
    }

    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> Vec<(i64, u32)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, id: i64) -> usize {
        self.calls.lock().unwrap().iter().filter(|(m, _)| *m == id).count()
    }

    /// How many times each message was sent.
    pub fn per_message(&self) -> HashMap<i64, usize> {
        let mut m = HashMap::new();
        for (id, _) in self.calls() {
            *m.entry(id).or_default() += 1;
        }
        m
    }
}

impl Provider for ScriptedProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn send<'a>(&'a self, msg: &'a OutgoingMessage) -> BoxFuture<'a, Result<Receipt, SendError>> {
        Box::pin(async move {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((msg.id, msg.attempt));
                calls.iter().filter(|(m, _)| *m == msg.id).count()
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            (self.script)(msg, n)
        })
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

pub fn test_config(worker: &str) -> ProcessorConfig {
    ProcessorConfig {
        worker_id: worker.to_owned(),
        batch_size: 50,
        limits: std::collections::HashMap::new(),
        lease: Duration::from_secs(60),
        send_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            max_rate_limit_wait: Duration::from_secs(3600),
        },
    }
}

/// Randomness fixed at 0: backoff is exactly half the nominal delay.
pub fn zero_random() -> Random {
    Arc::new(|| 0.0)
}

pub fn processor(store: &Store, provider: &ScriptedProvider, clock: &ManualClock, worker: &str) -> Arc<Processor> {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Arc::new(Processor::new(
        store.clone(),
        Providers::all(Arc::new(provider.clone())),
        clock,
        zero_random(),
        test_config(worker),
    ))
}

/// `herald process` once, in-process.
pub async fn run_once(p: &Arc<Processor>) -> RunSummary {
    p.run(Mode::Once, Shutdown::never()).await.expect("processor run")
}
