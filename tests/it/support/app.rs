//! The application as `herald serve` builds it (`Application::build`), on
//! port 0, with the test's database and a provider the test scripts.

use std::collections::HashMap;
use std::sync::Arc;

use herald::app::{Application, Overrides};
use herald::config::Config;
use herald::processor::{Shutdown, ShutdownHandle};
use herald::providers::Providers;
use reqwest::StatusCode;
use serde_json::Value;

use super::{wait_until, ScriptedProvider, TestDb};

pub(crate) const KEY: &str = "test-key-0123456789abcdef";

pub(crate) struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
    pub provider: ScriptedProvider,
    _stop: ShutdownHandle,
}

/// The app with these API keys.
pub(crate) async fn spawn_app(db: &TestDb, api_keys: &[&str]) -> TestApp {
    spawn_app_with(db, api_keys, &[]).await
}

/// [`spawn_app`] with more configuration, as environment variables
/// (e.g. `PUBLIC_URL` and `TWILIO_AUTH_TOKEN` for the webhooks).
pub(crate) async fn spawn_app_with(db: &TestDb, api_keys: &[&str], vars: &[(&str, &str)]) -> TestApp {
    spawn_app_scripted(db, api_keys, vars, ScriptedProvider::ok()).await
}

/// [`spawn_app_with`] sending through `provider` on every channel.
pub(crate) async fn spawn_app_scripted(
    db: &TestDb,
    api_keys: &[&str],
    vars: &[(&str, &str)],
    provider: ScriptedProvider,
) -> TestApp {
    herald::telemetry::init(herald::config::LogFormat::Text, "error");
    let keys = api_keys.join(",");
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("API_KEYS", keys.as_str()),
        ("BATCH_SIZE", "50"),
        ("LEASE_SECONDS", "60"),
        ("PROVIDER_TIMEOUT_SECONDS", "10"),
        ("POLL_INTERVAL_MS", "20"),
        ("RETRY_BASE_SECONDS", "10"),
        ("RETRY_MAX_SECONDS", "600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(&env).expect("test configuration");
    let app = Application::build(
        config,
        Overrides {
            store: Some(db.store.clone()),
            providers: Some(Providers::all(Arc::new(provider.clone()))),
            ..Overrides::default()
        },
    )
    .await
    .expect("build the app");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop, shutdown) = Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown));
    TestApp {
        url,
        http: reqwest::Client::new(),
        provider,
        _stop: stop,
    }
}

impl TestApp {
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(KEY)
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(KEY)
    }

    pub(crate) fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(format!("{}{path}", self.url)).bearer_auth(KEY)
    }

    /// `GET /api/messages/{id}`.
    pub(crate) async fn message(&self, id: i64) -> Value {
        self.get(&format!("/api/messages/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Wait until message `id` has `status`; returns it.
    pub(crate) async fn wait_status(&self, id: i64, status: &str) -> Value {
        wait_until(&format!("message {id} to become {status}"), || async {
            self.message(id).await["status"] == status
        })
        .await;
        self.message(id).await
    }
}

/// A response's status and JSON body (null when it has none).
pub(crate) async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}
