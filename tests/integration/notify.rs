//! `[[notify]]` end to end: the built binary runs a command-backend plan that breaches and
//! rolls back, while real HTTP receivers on 127.0.0.1 record what they get: one signed webhook
//! (its signature checked here with an HMAC written independently of rollout's), one Slack
//! receiver that answers 500 and then 200, one that is down, and one that hangs. None of them
//! may delay or change the rollout; each failure is a warning; no secret is shown anywhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::running::{Running, wait_until};

/// HMAC-SHA256 (RFC 2104) from SHA-256 alone, so the check does not share rollout's code.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_independent_hmac_matches_rfc_4231() {
    assert_eq!(
        hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let request = Request {
        head,
        body: String::new(),
    };
    let length: usize = request.header("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        body: String::from_utf8(body).ok()?,
        ..request
    })
}

/// A receiver on 127.0.0.1. `answer` gets the request and its index and returns the status to
/// answer with, or `None` to hold the connection until `release` is sent.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Request>>>,
    release: mpsc::Sender<()>,
}

impl Receiver {
    fn start(answer: impl Fn(usize) -> Option<u16> + Send + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = mpsc::channel::<()>();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let index = {
                    let mut seen = record.lock().unwrap();
                    seen.push(request);
                    seen.len() - 1
                };
                let status = answer(index).unwrap_or_else(|| {
                    let _ = released.recv_timeout(Duration::from_secs(60));
                    200
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, seen, release }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.header("x-rollout-event").unwrap_or_default())
            .collect()
    }
}

/// A port where nothing listens: bound, then let go.
fn down_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", listener.local_addr().unwrap())
}

const SECRET: &str = "s3cret-signing-key";
const TOKEN: &str = "tok-7f3a9c";

fn plan() -> String {
    r#"
name = "shop"

[defaults]
bake = "30s"
interval = "200ms"

[backend]
type = "command"
set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT > weight"]
rollback = ["touch", "rolled-back"]

[sources.files]
type = "command"

[[metrics]]
name = "errors"
source = "files"
run = ["cat", "errors"]
rollback = "> 5"

[[stages]]
weight = 10
[[stages]]
weight = 100

[[notify]]
type = "webhook"
url = "${SIGNED_URL}"
secret = "${HOOK_SECRET}"
headers = { Authorization = "Bearer ${HOOK_TOKEN}" }
on = ["started", "stage-started", "stage-passed", "approval-needed", "stuck", "promoted", "rolled-back", "paused", "rollback-failed"]

[[notify]]
type = "slack"
url = "${FLAKY_URL}"

[[notify]]
type = "webhook"
url = "${DOWN_URL}"
on = ["rolled-back"]

[[notify]]
type = "webhook"
url = "${HANGING_URL}"
timeout = "10m"
on = ["started"]
"#
    .to_string()
}

#[test]
fn receivers_that_fail_or_hang_never_delay_the_rollback() {
    let signed = Receiver::start(|_| Some(200));
    let flaky = Receiver::start(|i| Some(if i == 0 { 500 } else { 200 }));
    let hanging = Receiver::start(|_| None);
    let down = down_url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), plan()).unwrap();
    std::fs::write(dir.path().join("errors"), "9").unwrap();
    let env = [
        ("SIGNED_URL", signed.url.as_str()),
        ("FLAKY_URL", flaky.url.as_str()),
        ("DOWN_URL", down.as_str()),
        ("HANGING_URL", hanging.url.as_str()),
        ("HOOK_SECRET", SECRET),
        ("HOOK_TOKEN", TOKEN),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let running =
        Running::start_with_env(dir.path(), &["run", "plan.toml", "--output", "json"], &env);
    // The hanging receiver holds the `started` notification and does not answer (its timeout
    // is ten minutes): meanwhile the run measures, breaches and rolls back.
    assert!(wait_until(Duration::from_secs(30), || {
        dir.path().join("rolled-back").exists()
    }));
    assert_eq!(hanging.events(), ["started"], "still holding `started`");
    hanging.release.send(()).unwrap();
    let (code, stderr, stdout) = running.finish();
    assert_eq!(code, 3, "{stderr}");

    // The signed webhook got every event it asked for, each body exactly the JSON event
    // `--output json` printed, signed and with its header.
    let json_lines: Vec<&str> = stdout.lines().collect();
    let requests = signed.requests();
    assert_eq!(signed.events(), ["started", "stage-started", "rolled-back"]);
    for request in &requests {
        assert!(
            json_lines.contains(&request.body.as_str()),
            "{}",
            request.body
        );
        assert_eq!(
            request.header("x-rollout-signature"),
            Some(format!(
                "sha256={}",
                hmac_sha256(SECRET.as_bytes(), request.body.as_bytes())
            ))
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}"))
        );
        assert_eq!(
            request.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    let last: serde_json::Value = serde_json::from_str(&requests[2].body).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["kind"], "rolled-back");

    // Slack: 500, then the retry got through; the default events only.
    assert_eq!(flaky.events(), ["started", "started", "rolled-back"]);
    let texts: Vec<String> = flaky
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts[0], texts[1]);
    assert!(
        texts[0].starts_with("[shop] rollout shop: canary in 2 stages"),
        "{}",
        texts[0]
    );
    assert!(
        texts[2].starts_with(
            "[shop] ROLLED BACK: Rolled back to the stable version because metric errors was 9"
        ),
        "{}",
        texts[2]
    );

    // The receiver that is down is a warning, after its retries; nothing else is.
    let warnings: Vec<serde_json::Value> = json_lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    let warning = warnings[0]["message"].as_str().unwrap();
    assert!(
        warning.starts_with(
            "the `rolled-back` notification to notify[2] (webhook) was not delivered: "
        ) && warning.ends_with("(after 3 attempts)"),
        "{warning}"
    );

    // No URL, token or secret in the output or the journal.
    let journal = std::fs::read_to_string(dir.path().join(".rollout/shop/journal.json")).unwrap();
    for text in [&stdout, &stderr, &journal] {
        for secret in [SECRET, TOKEN, &signed.url, &flaky.url, &down, &hanging.url] {
            let port = secret.rsplit(':').next().unwrap_or(secret);
            assert!(!text.contains(port), "{secret} shown in:\n{text}");
        }
    }
}
