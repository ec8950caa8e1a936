//! A real SMTP server for the tests: Python's aiosmtpd running
//! `tests/support/smtp_server.py` (`scripts/test` installs aiosmtpd). It
//! prints each message it received, parsed, as a JSON line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::config::SmtpSettings;
use secrecy::SecretString;
use serde_json::Value;

pub(crate) struct SmtpServer {
    pub port: u16,
    child: Child,
    received: Arc<Mutex<Vec<Value>>>,
}

impl SmtpServer {
    pub(crate) fn start() -> SmtpServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = format!("{}/tests/support/smtp_server.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3")
            .args([&script, "--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for the SMTP tests");
        let stdout = child.stdout.take().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "READY" {
                    let _ = ready_tx.send(());
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(20)).expect(
            "the test SMTP server did not start: aiosmtpd is needed (./scripts/test installs it: pip install aiosmtpd)",
        );
        SmtpServer { port, child, received }
    }

    pub(crate) fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Wait (up to 10 s) until `n` messages have arrived; returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Value> {
        super::wait_until("messages to reach the SMTP server", || async {
            self.received().len() >= n
        })
        .await;
        self.received()
    }

    pub(crate) fn settings(&self, user: Option<(&str, &str)>) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            user: user.map(|(u, _)| u.to_owned()),
            password: user.map(|(_, p)| SecretString::from(p.to_owned())),
            secure: false,
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
