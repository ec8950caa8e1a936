//! Building Herald's parts from a [`Config`]: the same way for `main` and tests.

use std::sync::Arc;

use anyhow::Context;

use crate::clock::{system_random, SystemClock};
use crate::config::{redact_url, Config, ProviderChoice};
use crate::domain::Channel;
use crate::processor::{default_worker_id, Processor, ProcessorConfig};
use crate::providers::{LogProvider, Provider, Providers};
use crate::store::Store;

/// Connect to the configured database and apply migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| format!("could not open database {}", redact_url(&config.database_url)))?;
    store.migrate().await.context("could not apply database migrations")?;
    Ok(store)
}

/// One provider per channel, as configured. Fails on bad credentials.
pub fn build_providers(config: &Config) -> anyhow::Result<Providers> {
    let log: Arc<dyn Provider> = match &config.log_outbox {
        Some(path) => Arc::new(
            LogProvider::with_outbox(path)
                .with_context(|| format!("LOG_OUTBOX {} cannot be opened", path.display()))?,
        ),
        None => Arc::new(LogProvider::new()),
    };
    let mut providers = Providers::all(log.clone());
    for channel in Channel::ALL {
        let provider: Arc<dyn Provider> = match config.provider_for(channel) {
            ProviderChoice::Log => log.clone(),
        };
        providers.set(channel, provider);
    }
    Ok(providers)
}

/// Say at start-up which provider serves each channel.
pub fn announce_providers(config: &Config) {
    for channel in Channel::ALL {
        match config.provider_for(channel) {
            ProviderChoice::Log => tracing::info!(
                %channel,
                "no provider configured for {channel}: using the log provider (messages are recorded, not sent)"
            ),
        }
    }
}

pub fn processor_config(config: &Config) -> ProcessorConfig {
    ProcessorConfig {
        worker_id: default_worker_id(),
        batch_size: config.batch_size,
        send_concurrency: config.send_concurrency,
        lease: config.lease,
        send_timeout: config.provider_timeout,
        poll_interval: config.poll_interval,
        retry: config.retry,
    }
}

/// A processor with the real clock and randomness.
pub fn build_processor(config: &Config, store: Store, providers: Providers) -> Arc<Processor> {
    Arc::new(Processor::new(
        store,
        providers,
        Arc::new(SystemClock),
        system_random(),
        processor_config(config),
    ))
}
