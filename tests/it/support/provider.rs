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
pub(crate) struct ScriptedProvider {
    name: &'static str,
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<(i64, u32)>>>,
    /// The recipient of each call, as the provider received it.
    recipients: Arc<Mutex<Vec<(i64, String)>>>,
    delay: Duration,
}

impl ScriptedProvider {
    pub(crate) fn new(
        script: impl Fn(&OutgoingMessage, usize) -> Result<Receipt, SendError> + Send + Sync + 'static,
    ) -> Self {
        ScriptedProvider {
            name: "test",
            script: Arc::new(script),
            calls: Arc::default(),
            recipients: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn ok() -> Self {
        ScriptedProvider::new(|m, _| Ok(Receipt::new(format!("T-{}", m.id))))
    }

    pub(crate) fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub(crate) fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn calls(&self) -> Vec<(i64, u32)> {
        self.calls.lock().unwrap().clone()
    }

    /// The recipient message `id` was sent to (the last time).
    pub(crate) fn recipient_of(&self, id: i64) -> Option<String> {
        let r = self.recipients.lock().unwrap();
        r.iter().rev().find(|(m, _)| *m == id).map(|(_, to)| to.clone())
    }

    pub(crate) fn calls_for(&self, id: i64) -> usize {
        self.calls.lock().unwrap().iter().filter(|(m, _)| *m == id).count()
    }

    /// How many times each message was sent.
    pub(crate) fn per_message(&self) -> HashMap<i64, usize> {
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
                self.recipients
                    .lock()
                    .unwrap()
                    .push((msg.id, msg.recipient.to_string()));
                calls.iter().filter(|(m, _)| *m == msg.id).count()
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            (self.script)(msg, n)
        })
    }
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

pub(crate) fn test_config(worker: &str) -> ProcessorConfig {
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
        record_grace: Duration::from_millis(300),
        breaker: herald::breaker::BreakerPolicy::default(),
        whatsapp_fallback: false,
    }
}

/// Randomness fixed at 0: backoff is exactly half the nominal delay.
pub(crate) fn zero_random() -> Random {
    Arc::new(|| 0.0)
}

pub(crate) fn processor(
    store: &Store,
    provider: &ScriptedProvider,
    clock: &ManualClock,
    worker: &str,
) -> Arc<Processor> {
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
pub(crate) async fn run_once(p: &Arc<Processor>) -> RunSummary {
    p.run(Mode::Once, Shutdown::never()).await.expect("processor run")
}
