//! `type = "http-json"`: GET a JSON document and read one number at a JSON pointer.

use std::time::Duration;

use async_trait::async_trait;

use super::{Probe, ProbeError, Redactor, Which, finite, transport_error};

pub struct HttpJson {
    pub client: reqwest::Client,
    pub url: String,
    /// The URL as the plan writes it (`${VAR}`s unresolved), for messages.
    pub url_shown: String,
    pub headers: reqwest::header::HeaderMap,
    pub timeout: Duration,
    pub path: String,
    pub baseline_path: Option<String>,
    pub redactor: Redactor,
}

impl HttpJson {
    fn pointer(&self, which: Which) -> &str {
        match which {
            Which::Value => &self.path,
            Which::Baseline => self.baseline_path.as_deref().unwrap_or(&self.path),
        }
    }
}

#[async_trait]
impl Probe for HttpJson {
    fn describe(&self, which: Which) -> String {
        format!("GET {} and read {}", self.url_shown, self.pointer(which))
    }

    async fn read(&self, which: Which) -> Result<Option<f64>, ProbeError> {
        self.get(which).await.map_err(|e| self.redactor.error(e))
    }
}

impl HttpJson {
    async fn get(&self, which: Which) -> Result<Option<f64>, ProbeError> {
        let response = self
            .client
            .get(&self.url)
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        if !status.is_success() {
            return Err(ProbeError::Http {
                status: status.as_u16(),
                message: self.redactor.snippet(&body),
            });
        }
        extract(&body, self.pointer(which))
    }
}

/// The number at `pointer`. A missing key or `null` is no data; anything else but a number
/// (or a string holding one) is an unusable answer.
pub fn extract(body: &[u8], pointer: &str) -> Result<Option<f64>, ProbeError> {
    let document: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ProbeError::Malformed(format!("the body is not JSON: {e}")))?;
    match document.pointer(pointer) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64().and_then(finite)),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().map(finite).map_err(|_| {
            let shown: String = s.chars().take(80).collect();
            ProbeError::Malformed(format!("{pointer} is the string {shown:?}, not a number"))
        }),
        Some(other) => Err(ProbeError::Malformed(format!(
            "{pointer} is {}, not a number",
            match other {
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Array(_) => "an array",
                _ => "an object",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_at_pointers() {
        let body = br#"{"canary":{"latency_p99_ms":212.5,"errors":"0.01","gone":null,"ok":true},"a/b":{"~x":3}}"#;
        assert_eq!(extract(body, "/canary/latency_p99_ms"), Ok(Some(212.5)));
        assert_eq!(extract(body, "/canary/errors"), Ok(Some(0.01)));
        assert_eq!(extract(body, "/a~1b/~0x"), Ok(Some(3.0)));
        assert_eq!(extract(body, "/canary/gone"), Ok(None));
        assert_eq!(extract(body, "/canary/missing"), Ok(None));
        assert!(matches!(
            extract(body, "/canary/ok"),
            Err(ProbeError::Malformed(_))
        ));
        assert!(matches!(
            extract(body, "/canary"),
            Err(ProbeError::Malformed(_))
        ));
        assert!(matches!(
            extract(b"<html>", "/x"),
            Err(ProbeError::Malformed(_))
        ));
    }
}
