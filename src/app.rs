//! Building Herald from a [`Config`]: the same way for `main` and the tests.
//!
//! [`Application::build`] opens the database, builds the providers and the
//! processor, and binds the HTTP listener; [`Application::run_until_stopped`]
//! serves until shutdown. Tests build it with `PORT=0` and [`Overrides`].

use std::sync::Arc;

use anyhow::Context;

use crate::clock::{system_random, Clock, Random, SystemClock};
use crate::config::{Config, ProviderChoice};
use crate::domain::Channel;
use crate::http::{is_loopback, router, serve, AppState, ServerLimits, Webhooks};
use crate::outbound::Dispatcher;
use crate::processor::{default_worker_id, Mode, Processor, ProcessorConfig, Shutdown};
use crate::providers::{Custom, LogProvider, Provider, Providers, Sendgrid, Smtp, Twilio};
use crate::store::Store;

/// Connect to the configured database, and make it ready: Herald's tables
/// are created in an empty database and upgraded when Herald made them; a
/// table a POS created is refused until `herald migrate` adopts it.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let mut store = connect(config).await?;
    let applied = store.prepare().await.map_err(|e| match e {
        e @ crate::store::StoreError::NotAdopted => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context("could not create or upgrade Herald's tables"),
    })?;
    if let (Some(first), Some(last)) = (applied.first(), applied.last()) {
        tracing::info!(
            "applied Herald's migrations {} to {} to {}",
            first.0,
            last.0,
            config.database_url.redacted()
        );
    }
    Ok(store)
}

/// Connect to the configured database as it is.
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    Store::connect_with(
        &config.database_url,
        config.database_max_connections,
        config.database_timezone.as_deref(),
    )
    .await
    .with_context(|| format!("could not open database {}", config.database_url.redacted()))
}

/// Say at start-up which database Herald uses and anything in the
/// configuration worth a warning.
pub fn announce_configuration(config: &Config) {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let uses_real_provider = Channel::ALL
        .into_iter()
        .any(|c| config.provider_for(c) != ProviderChoice::Log);
    if !config.database_url_given && uses_real_provider {
        tracing::warn!(
            "DATABASE_URL is not set: using the SQLite file ./herald.db in {}; set DATABASE_URL to your POS's database",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    tracing::info!(database = %config.database_url.redacted(), "database");
}

/// One provider per channel, as configured. The configuration has already
/// been validated, so a missing piece here is a bug, not a user error.
pub fn build_providers(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Providers> {
    let log: Arc<dyn Provider> = match &config.log_outbox {
        Some(path) => Arc::new(
            LogProvider::with_outbox(path, clock.clone())
                .with_context(|| format!("LOG_OUTBOX {} cannot be opened", path.display()))?,
        ),
        None => Arc::new(LogProvider::new()),
    };
    let timeout = config.provider_timeout;
    // Built once and shared by the channels that use them (one Twilio
    // client, one connection pool).
    let twilio: Option<Arc<dyn Provider>> = config
        .twilio
        .clone()
        .map(|t| Arc::new(Twilio::new(t, config.public_url.as_deref(), timeout, clock.clone())) as Arc<dyn Provider>);
    let custom: Option<Arc<dyn Provider>> = config
        .custom
        .clone()
        .map(|c| Arc::new(Custom::new(c, timeout, clock.clone())) as Arc<dyn Provider>);
    let mut providers = Providers::all(log.clone());
    for channel in Channel::ALL {
        let missing = || anyhow::anyhow!("{channel}: provider settings missing after validation");
        let mut chain: Vec<Arc<dyn Provider>> = Vec::new();
        for (i, choice) in config.providers.chain(channel).iter().enumerate() {
            let provider: Arc<dyn Provider> = match choice {
                ProviderChoice::Log => log.clone(),
                ProviderChoice::Twilio => twilio.clone().ok_or_else(missing)?,
                ProviderChoice::Custom => custom.clone().ok_or_else(missing)?,
                ProviderChoice::Sendgrid => {
                    let (s, from) = config
                        .sendgrid
                        .clone()
                        .zip(config.email_from.clone())
                        .ok_or_else(missing)?;
                    Arc::new(Sendgrid::new(s, from, timeout, clock.clone()))
                }
                ProviderChoice::Smtp => {
                    let (s, from) = config
                        .smtp
                        .as_ref()
                        .zip(config.email_from.as_ref())
                        .ok_or_else(missing)?;
                    // Its connections: EMAIL_CONCURRENCY when SMTP is the
                    // channel's first provider; behind another, the few an
                    // SMTP server takes (the channel's limit is the first's).
                    let channel_limit = config.limits.get(&Channel::Email).map_or(5, |l| l.concurrency);
                    let pool = if i == 0 { channel_limit } else { channel_limit.min(5) };
                    Arc::new(Smtp::new(s, from, timeout, pool as u32)?)
                }
            };
            chain.push(provider);
        }
        providers.set_chain(channel, chain);
    }
    Ok(providers)
}

/// Say at start-up which provider serves each channel, and its limits.
pub fn announce_providers(config: &Config) {
    announce_configuration(config);
    for channel in Channel::ALL {
        let limits = config.limits.get(&channel).copied();
        let rate = limits.map(|l| {
            if l.rate > 0.0 {
                format!("{}/s", l.rate)
            } else {
                "unlimited".to_owned()
            }
        });
        let chain: Vec<&str> = config.providers.chain(channel).iter().map(|p| p.as_str()).collect();
        match config.providers.chain(channel) {
            [ProviderChoice::Log] => tracing::info!(
                %channel,
                "no provider configured for {channel}: using the log provider (messages are recorded, not sent)"
            ),
            [other] => tracing::info!(
                %channel,
                provider = other.as_str(),
                rate = rate.as_deref().unwrap_or("unlimited"),
                concurrency = limits.map_or(0, |l| l.concurrency),
                "{channel} is sent through {}", other.as_str()
            ),
            _ => tracing::info!(
                %channel,
                providers = %chain.join(","),
                rate = rate.as_deref().unwrap_or("unlimited"),
                concurrency = limits.map_or(0, |l| l.concurrency),
                "{channel} is sent through {}, then {} while it is unavailable",
                chain[0],
                chain[1..].join(", then ")
            ),
        }
    }
}

/// The status-webhook dispatcher, as configured.
pub fn build_dispatcher(config: &Config, store: Store, overrides: &Overrides, worker: &str) -> Arc<Dispatcher> {
    Arc::new(Dispatcher::new(
        store,
        overrides.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
        overrides.random.clone().unwrap_or_else(system_random),
        config.outbound,
        worker,
    ))
}

pub fn processor_config(config: &Config) -> ProcessorConfig {
    ProcessorConfig {
        batch_size: config.batch_size,
        limits: config.limits.clone(),
        lease: config.lease,
        send_timeout: config.provider_timeout,
        poll_interval: config.poll_interval,
        retry: config.retry,
        breaker: config.breaker,
        whatsapp_fallback: config.whatsapp_fallback.is_some(),
        ..ProcessorConfig::new(default_worker_id())
    }
}

/// What tests (or embedders) replace in a built application.
#[derive(Default, Clone)]
pub struct Overrides {
    /// Use this store instead of opening `DATABASE_URL`.
    pub store: Option<Store>,
    /// Use these providers instead of the configured ones.
    pub providers: Option<Providers>,
    pub clock: Option<Arc<dyn Clock>>,
    pub random: Option<Random>,
}

/// A processor as configured, with the real clock and randomness unless overridden.
pub fn build_processor(config: &Config, store: Store, overrides: &Overrides) -> anyhow::Result<Arc<Processor>> {
    let clock = overrides.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let providers = match &overrides.providers {
        Some(p) => p.clone(),
        None => build_providers(config, clock.clone())?,
    };
    Ok(Arc::new(Processor::new(
        store,
        providers,
        clock,
        overrides.random.clone().unwrap_or_else(system_random),
        processor_config(config),
    )))
}

/// `herald serve`: the HTTP API and, unless `ENABLE_MESSAGE_PROCESSOR=false`,
/// the processor, in one process.
pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    store: Store,
    state: AppState,
    processor: Option<Arc<Processor>>,
    /// Delivers status webhooks to the POS.
    dispatcher: Arc<Dispatcher>,
    /// Prunes old finished messages (`RETENTION_DAYS`, with the processor).
    retention: Option<Arc<crate::retention::RetentionRunner>>,
    /// The store was opened here (not handed in), so it is closed here.
    owns_store: bool,
    limits: ServerLimits,
}

impl Application {
    /// Check the configuration's safety rules, open the database, build the
    /// processor and the HTTP state, and bind `HOST:PORT` (`PORT=0`: any free port).
    pub async fn build(config: Config, overrides: Overrides) -> anyhow::Result<Application> {
        if config.api_keys.is_empty() && !is_loopback(&config.host) {
            anyhow::bail!(
                "HOST={} is reachable from other machines, but API_KEYS is not set: anyone could send messages. \
                 Set API_KEYS to one or more comma-separated keys (e.g. API_KEYS=$(openssl rand -hex 32)), \
                 or keep HOST=127.0.0.1",
                config.host
            );
        }
        if config.twilio_webhook_token.is_some() && config.public_url.is_none() {
            tracing::warn!("TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: Twilio status callbacks are disabled");
        }
        let owns_store = overrides.store.is_none();
        let store = match &overrides.store {
            Some(s) => s.clone(),
            None => open_store(&config).await?,
        };
        let clock = overrides.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
        let processor = if config.enable_message_processor {
            if overrides.providers.is_none() {
                announce_providers(&config);
            }
            Some(build_processor(&config, store.clone(), &overrides)?)
        } else {
            tracing::info!(
                "ENABLE_MESSAGE_PROCESSOR=false: serving the API only; run `herald process --watch` to send"
            );
            None
        };
        let webhooks = Webhooks {
            public_url: config.public_url.clone(),
            twilio_token: config.twilio_webhook_token.clone(),
            sendgrid_key: config.sendgrid_webhook_key.clone(),
            counters: Default::default(),
            whatsapp_fallback: config.whatsapp_fallback,
        };
        let dispatcher = build_dispatcher(&config, store.clone(), &overrides, &default_worker_id());
        let retention = match (&processor, config.retention_days) {
            (Some(p), Some(days)) => Some(Arc::new(crate::retention::RetentionRunner::new(
                store.clone(),
                clock.clone(),
                days,
                p.config().worker_id.clone(),
            ))),
            _ => None,
        };
        let state = AppState::new(
            store.clone(),
            clock,
            config.api_keys.clone(),
            webhooks,
            processor.as_deref(),
        )
        .with_outbound(dispatcher.metrics())
        .with_metrics_cache(config.metrics_cache)
        .with_dashboard(&config.dashboard)
        .with_alerts(config.alerts.clone());
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (HOST/PORT)"))?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            address = %listener.local_addr()?,
            auth = if config.api_keys.is_empty() { "none (loopback only)" } else { "API_KEYS" },
            "herald is serving"
        );
        Ok(Application {
            listener,
            port,
            store,
            state,
            processor,
            dispatcher,
            retention,
            owns_store,
            limits: config.server_limits,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The status-webhook dispatcher.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The in-process processor, when one runs.
    pub fn processor(&self) -> Option<&Arc<Processor>> {
        self.processor.as_ref()
    }

    /// Serve (and process) until `shutdown` fires; then finish requests and
    /// sends in flight, hand back unstarted messages and close the database.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let processor = self.processor.map(|p| {
            let run_shutdown = shutdown.clone();
            tokio::spawn(async move { p.run(Mode::Watch, run_shutdown).await })
        });
        let alerts = tokio::spawn(self.state.alert_runner().run(shutdown.clone()));
        let retention = self.retention.map(|r| tokio::spawn(r.run(shutdown.clone())));
        if processor.is_some() {
            tokio::spawn(crate::retention::backfill_metadata(
                self.store.clone(),
                shutdown.clone(),
            ));
        }
        let outbound = tokio::spawn(self.dispatcher.clone().run(shutdown.clone()));
        let webhook_counts = tokio::spawn(
            self.state
                .clone()
                .flush_webhook_rejections(std::time::Duration::from_secs(10), shutdown.clone()),
        );
        serve(self.listener, router(self.state), shutdown.clone(), self.limits).await;
        if let Some(p) = processor {
            p.await.context("processor task")?.context("processor")?;
        }
        let _ = tokio::join!(alerts, webhook_counts, outbound);
        if let Some(r) = retention {
            let _ = r.await;
        }
        if self.owns_store {
            self.store.close().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
