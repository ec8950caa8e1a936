//! The `herald` binary, run as a user runs it.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use super::TestDb;

pub(crate) fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// A `herald` command with a clean environment: only what the test sets.
pub(crate) fn herald(db: &TestDb, dir: &Path) -> Command {
    let mut c = Command::new(herald_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .current_dir(dir);
    c
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

/// `herald args…` with extra environment, without blocking the runtime
/// (the test may serve loopback providers meanwhile).
pub(crate) async fn run_herald(db: &TestDb, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = herald(db, db.dir.path());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::process::Command::from(c).output().await.expect("run herald")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command's output; panics with its stderr if it failed.
pub(crate) fn ok(o: Output) -> String {
    assert!(o.status.success(), "herald failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

/// Ask a running `herald` to stop, as systemd or PM2 would.
pub(crate) fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Wait for a child to exit; kill it and fail if it takes longer than `within`.
pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
