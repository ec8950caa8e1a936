//! The `herald` binary, run as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

use super::TestDb;

pub fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// A `herald` command with a clean environment: only what the test sets.
pub fn herald(db: &TestDb, dir: &Path) -> Command {
    let mut c = Command::new(herald_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .current_dir(dir);
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

/// `herald args…` with extra environment, without blocking the runtime
/// (the test may serve loopback providers meanwhile).
pub async fn run_herald(db: &TestDb, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = herald(db, db.dir.path());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::process::Command::from(c).output().await.expect("run herald")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command's output; panics with its stderr if it failed.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "herald failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}
