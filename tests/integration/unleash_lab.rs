//! A real Unleash for the tests: unleash-server 7.5.1 (npm, tests/support/unleash) on a
//! throwaway PostgreSQL cluster (Debian's `postgresql`), made with `initdb` in a temporary
//! directory and run as the `postgres` user when the tests run as root. Both listen on
//! 127.0.0.1 only, and both are stopped when the lab is dropped; should the test process die
//! without unwinding, the kernel sends them a signal (PR_SET_PDEATHSIG).
//!
//! A missing piece fails the test, naming the command that installs it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const START_TIMEOUT: Duration = Duration::from_secs(120);
pub const ADMIN_TOKEN: &str = "*:*.rollout-test-admin-secret";
pub const CLIENT_TOKEN: &str = "default:production.rollout-test-backend";

pub struct UnleashLab {
    node: Child,
    postgres: Child,
    port: u16,
    http: reqwest::blocking::Client,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where Debian keeps PostgreSQL's server programs (not on PATH).
fn pg_bin(program: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(program))
        .find(|p| p.exists());
    on_path.or(debian).unwrap_or_else(|| {
        panic!("the unleash tests need PostgreSQL's {program}: run ./scripts/install-services.sh (apt-get install postgresql)")
    })
}

pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/unleash")
}

/// The uid and gid to run PostgreSQL as: it refuses to run as root.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the unleash tests run PostgreSQL as the `postgres` user, which does not exist: run ./scripts/install-services.sh"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>, death: libc::c_int) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal the child when
    // the test process dies.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, death);
            Ok(())
        });
    }
}

impl UnleashLab {
    pub fn start() -> UnleashLab {
        let server = support_dir().join("node_modules/unleash-server/dist/server.js");
        assert!(
            server.exists(),
            "the unleash tests need unleash-server 7.5.1: run ./scripts/install-services.sh (npm install in tests/support/unleash)"
        );
        let dir = tempfile::tempdir().unwrap();
        let user = postgres_user();
        let data = dir.path().join("pg");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(pg_bin("initdb"));
        initdb
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "unleash",
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut initdb, user, libc::SIGKILL);
        assert!(initdb.status().unwrap().success(), "initdb failed");
        let pg_port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))
                .unwrap();
        }
        let mut postgres = Command::new(pg_bin("postgres"));
        postgres
            .args([
                "-D",
                data.to_str().unwrap(),
                "-h",
                "127.0.0.1",
                "-p",
                &pg_port.to_string(),
            ])
            .args(["-k", dir.path().to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SIGQUIT: an immediate shutdown, the throwaway cluster needs no more.
        as_user(&mut postgres, user, libc::SIGQUIT);
        let postgres = postgres.spawn().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("unleash.log")).unwrap();
        let mut node = Command::new("node");
        node.arg(&server)
            .current_dir(support_dir())
            .env(
                "DATABASE_URL",
                format!("postgres://unleash@127.0.0.1:{pg_port}/postgres"),
            )
            .env("DATABASE_SSL", "false")
            .env("HTTP_HOST", "127.0.0.1")
            .env("HTTP_PORT", port.to_string())
            .env("INIT_ADMIN_API_TOKENS", ADMIN_TOKEN)
            .env("INIT_BACKEND_API_TOKENS", CLIENT_TOKEN)
            .env("SEND_TELEMETRY", "false")
            .env("CHECK_VERSION", "false")
            .env("LOG_LEVEL", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_user(&mut node, None, libc::SIGKILL);
        let node = node
            .spawn()
            .expect("the unleash tests need node: apt-get install nodejs");
        let lab = UnleashLab {
            node,
            postgres,
            port,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dir,
        };
        lab.wait_healthy();
        lab
    }

    /// Unleash answers `/health` once PostgreSQL is up and its migrations have run.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let health = self
                .http
                .get(format!("{}/health", self.url()))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok());
            if health.is_some_and(|h| h["health"] == "GOOD") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Unleash did not become healthy:\n{}",
                std::fs::read_to_string(self.dir.path().join("unleash.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url()))
            .header("Authorization", ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new flag in project `default`, with these strategies in production, enabled there.
    pub fn create_flag(&self, name: &str, strategies: &[Value]) {
        let features = "/api/admin/projects/default/features";
        self.admin(
            reqwest::Method::POST,
            features,
            Some(serde_json::json!({ "name": name, "type": "release" })),
        );
        let env = format!("{features}/{name}/environments/production");
        for s in strategies {
            self.admin(
                reqwest::Method::POST,
                &format!("{env}/strategies"),
                Some(s.clone()),
            );
        }
        self.admin(reqwest::Method::POST, &format!("{env}/on"), None);
    }

    /// Whether the flag is enabled in production, and its strategies there.
    pub fn production(&self, flag: &str) -> (bool, Vec<Value>) {
        let feature = self.admin(
            reqwest::Method::GET,
            &format!("/api/admin/projects/default/features/{flag}"),
            None,
        );
        let enabled = feature["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "production")
            .map(|e| e["enabled"] == true)
            .unwrap();
        let strategies = self.admin(
            reqwest::Method::GET,
            &format!(
                "/api/admin/projects/default/features/{flag}/environments/production/strategies"
            ),
            None,
        );
        (enabled, strategies.as_array().unwrap().clone())
    }
}

impl Drop for UnleashLab {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.postgres.id() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = self.postgres.wait();
    }
}
