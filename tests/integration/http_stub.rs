//! A small HTTP/1.1 server on 127.0.0.1 for tests: a closure answers each request, and every
//! request's head (request line and headers) is kept, so a test can check what was sent.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One answer: status, extra headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn redirect(location: &str) -> Answer {
        Answer {
            status: 302,
            headers: vec![("Location".into(), location.to_string())],
            body: String::new(),
        }
    }
}

pub struct Stub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    /// Serves until the test process ends. `answer` gets the request's head.
    pub fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port on 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // A client that never finishes its request must not hang the test.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = String::new();
                let mut reader = BufReader::new(&stream);
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push_str(&line),
                    }
                }
                seen.lock().unwrap().push(head.clone());
                let answer = answer(&head);
                let mut response = format!(
                    "HTTP/1.1 {} Stub\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for (name, value) in &answer.headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&answer.body);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Stub { url, requests }
    }

    /// The heads of the requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The path of a request head's request line (`GET /stats?x=1 HTTP/1.1` gives `/stats?x=1`).
pub fn path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}
