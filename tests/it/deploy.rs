//! The ready-made deployment files: the systemd units pass `systemd-analyze
//! verify` with no warning, the Dockerfile's runtime stage (its ENV, USER,
//! CMD and HEALTHCHECK) works as written (and the image builds and runs
//! where Docker is usable), and PM2's ecosystem file loads in Node with the
//! settings Herald needs, and starts and stops Herald under a real PM2.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn systemd_units_verify_cleanly() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is needed to check deploy/systemd (Debian: apt-get install systemd)"
    );
    for unit in ["herald.service", "herald-worker.service"] {
        let text = std::fs::read_to_string(repo(&format!("deploy/systemd/{unit}"))).unwrap();
        for needed in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "StateDirectory=herald",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=40",
        ] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        // Verified where the binary really is (verify checks it exists).
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join(unit);
        std::fs::write(&local, text.replace("/usr/local/bin/herald", herald_bin())).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&local)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "{unit}: {err}");
    }
}

/// The Dockerfile's instructions, joined across `\` line ends.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            let (word, rest) = current.trim().split_once(' ').unwrap_or((current.trim(), ""));
            out.push((word.to_owned(), rest.trim().to_owned()));
            current.clear();
        }
    }
    out
}

fn json_args(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: not an exec-form JSON array: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_runtime_works_as_written() {
    let steps = dockerfile();
    let runtime: Vec<_> = steps
        .iter()
        .skip_while(|(w, a)| w != "FROM" || a.contains(" AS "))
        .cloned()
        .collect();
    assert!(!runtime.is_empty(), "a runtime stage after the build stage");
    let get = |word: &str| {
        runtime
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, a)| a.clone())
            .collect::<Vec<_>>()
    };
    // Built from the lock file, copied into a small image, run as a user.
    let build = steps
        .iter()
        .find(|(w, a)| w == "RUN" && a.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.1.contains("--release") && build.1.contains("--locked"),
        "{}",
        build.1
    );
    assert!(get("FROM")[0].contains("slim"), "a slim runtime image");
    let user = get("USER");
    assert!(
        !user.is_empty() && user[0] != "root" && user[0] != "0",
        "runs as a non-root user"
    );
    assert_eq!(get("VOLUME"), vec!["[\"/data\"]".to_owned()]);
    let locked = Command::new(env!("CARGO"))
        // `--locked` in the build stage needs a current Cargo.lock.
        .args(["tree", "--locked", "--offline", "-e", "normal"])
        .current_dir(repo(""))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        locked.status.success(),
        "Cargo.lock is current: {}",
        String::from_utf8_lossy(&locked.stderr)
    );

    // The runtime's environment, with /data in a temporary directory and a
    // free port.
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env: Vec<(String, String)> = Vec::new();
    for e in get("ENV") {
        for pair in e.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV NAME=value");
            let v = v.replace("/data", data.path().to_str().unwrap());
            env.push((k.to_owned(), if k == "PORT" { port.to_string() } else { v }));
        }
    }
    assert!(env.iter().any(|(k, v)| k == "HOST" && v == "0.0.0.0"));
    let cmd = json_args(&get("CMD")[0]);
    let health = get("HEALTHCHECK")[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK … CMD")
        .1
        .to_owned();
    let health = json_args(&health);
    assert_eq!((cmd[0].as_str(), health[0].as_str()), ("herald", "herald"));
    let run = |args: &[String], keys: bool| {
        let mut c = Command::new(herald_bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(&args[1..])
            .current_dir(data.path());
        if keys {
            c.env("API_KEYS", "0123456789abcdef0123456789abcdef");
        }
        c
    };
    // Without API_KEYS, listening on every address is refused.
    let refused = run(&cmd, false).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("API_KEYS"));
    // The health check fails while nothing listens, then passes.
    assert!(!run(&health, true).output().unwrap().status.success());
    let mut server = run(&cmd, true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the HEALTHCHECK command to pass", || async {
        run(&health, true).output().unwrap().status.success()
    })
    .await;
    assert!(data.path().join("herald.db").exists(), "the queue is in the volume");
    sigterm(&server);
    let status = wait_exit(&mut server, Duration::from_secs(20));
    assert!(status.success(), "STOPSIGNAL SIGTERM stops it cleanly: {status}");

    // Where Docker is usable, the image itself.
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if docker.is_ok_and(|s| s.success()) {
        let built = Command::new("docker")
            .args(["build", "-q", "-t", "herald-test", "."])
            .current_dir(repo(""))
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let ran = Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "herald", "herald-test", "--version"])
            .output()
            .unwrap();
        assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    } else {
        eprintln!("docker is not usable here: the image itself was not built (the runtime stage was exercised above)");
    }
}

#[test]
fn the_pm2_ecosystem_file_loads_with_safe_settings() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is needed to check deploy/pm2/ecosystem.config.js"
    );
    let path = repo("deploy/pm2/ecosystem.config.js");
    let out = Command::new("node")
        .arg("-e")
        .arg(format!(
            "process.stdout.write(JSON.stringify(require({:?})))",
            path.to_str().unwrap()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = &config["apps"][0];
    assert_eq!(app["script"], "herald");
    assert_eq!(app["args"], "process --watch");
    assert_eq!(app["interpreter"], "none", "a native binary");
    assert_eq!(app["watch"], false, "restarting on file changes would cut sends off");
    assert!(
        app["kill_timeout"].as_u64().unwrap() > 30_000,
        "longer than PROVIDER_TIMEOUT_SECONDS"
    );
}

/// `pm2 --json`-style process list: (name, status) of each app.
fn pm2_list(pm2: &str, home: &Path) -> Vec<(String, String)> {
    let out = Command::new(pm2).arg("jlist").env("PM2_HOME", home).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // Older PM2 versions may print a banner before the JSON.
    let json = &text[text.find('[').unwrap_or(0)..];
    let list: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("pm2 jlist: {e}: {text}"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["pm2_env"]["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The PM2 file as a Node shop uses it: `pm2 start` from the POS's
/// directory (its `backend/.env` configures Herald), a message queued by
/// the POS is sent, `pm2 stop` lets Herald finish and exit. PM2 is
/// installed by `scripts/test` (npm) when the machine has none.
#[tokio::test]
async fn pm2_starts_and_stops_herald_from_the_ecosystem_file() {
    let pm2 = std::env::var("HERALD_PM2").unwrap_or_else(|_| "pm2".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("pm2-home");
    // Whatever happens below, PM2's daemon (started by its first command)
    // goes with the test.
    struct Kill<'a>(&'a str, &'a Path);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0).arg("kill").env("PM2_HOME", self.1).output();
        }
    }
    let _kill = Kill(&pm2, &home);
    let version = Command::new(&pm2).arg("--version").env("PM2_HOME", &home).output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "PM2 is needed for this test ({pm2}); scripts/test installs it with npm, or set HERALD_PM2"
    );
    let backend = dir.path().join("backend");
    std::fs::create_dir_all(&backend).unwrap();
    std::fs::copy(
        repo("deploy/pm2/ecosystem.config.js"),
        dir.path().join("ecosystem.config.js"),
    )
    .unwrap();
    let db_path = backend.join("herald.db");
    std::fs::write(
        backend.join(".env"),
        format!(
            "DATABASE_URL=sqlite://{}\nSMS_PROVIDER=log\nPOLL_INTERVAL_MS=50\n",
            db_path.display()
        ),
    )
    .unwrap();
    let bin_dir = Path::new(herald_bin()).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let pm2_cmd = |args: &[&str]| {
        let out = Command::new(&pm2)
            .args(args)
            .current_dir(dir.path())
            .env("PM2_HOME", &home)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pm2 {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pm2_cmd(&["start", "ecosystem.config.js"]);
    let online = || pm2_list(&pm2, &home).contains(&("herald-processor".to_owned(), "online".to_owned()));
    let started = std::time::Instant::now();
    while !(online() && db_path.exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "herald-processor online: {:?}",
            pm2_list(&pm2, &home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The POS queues a message (here through the CLI, in the same directory).
    let send = Command::new(herald_bin())
        .args([
            "send",
            "--channel",
            "sms",
            "--to",
            "+14155550123",
            "--body",
            "ready for pickup",
        ])
        .current_dir(&backend)
        .env_clear()
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", String::from_utf8_lossy(&send.stderr));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM notification_messages ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        if status == "sent" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the message is still {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    pm2_cmd(&["stop", "herald-processor"]);
    assert!(pm2_list(&pm2, &home).contains(&("herald-processor".to_owned(), "stopped".to_owned())));
    // Herald was stopped with SIGTERM and said so (not killed mid-send).
    let logs = std::fs::read_dir(home.join("logs"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect::<String>();
    assert!(logs.contains("processor stopped"), "{logs}");
}
