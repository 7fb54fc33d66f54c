//! `type = "http-json"`: GET a JSON document and read one number at a JSON pointer.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Found, Probe, ProbeError, Redactor, Which, number, transport_error};

pub struct HttpJson {
    /// A judged metric: `path` and `baseline_path` point at arrays of samples.
    pub samples: bool,
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
        let what = if self.samples { "the samples at " } else { "" };
        format!(
            "GET {} and read {what}{}",
            self.url_shown,
            self.pointer(which)
        )
    }

    fn sent(&self, which: Which, _at: SystemTime) -> String {
        self.redactor.redact(&self.describe(which))
    }

    async fn read(&self, which: Which, _at: SystemTime) -> Result<Found, ProbeError> {
        self.get(which)
            .await
            .map_err(|e| e.redacted(&self.redactor))
    }
}

impl HttpJson {
    async fn get(&self, which: Which) -> Result<Found, ProbeError> {
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
        if self.samples {
            extract_samples(&body, self.pointer(which))
        } else {
            extract(&body, self.pointer(which))
        }
    }
}

/// The array of numbers at `pointer`: a judged metric's samples. Nulls, NaN and infinities are
/// no samples; anything else but a number (or a string holding one) is an unusable answer.
pub fn extract_samples(body: &[u8], pointer: &str) -> Result<Found, ProbeError> {
    let document: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ProbeError::Malformed(format!("the body is not JSON: {e}")))?;
    let items = match document.pointer(pointer) {
        None => return Ok(Found::NoData(format!("the document has no {pointer}"))),
        Some(serde_json::Value::Null) => return Ok(Found::NoData(format!("{pointer} is null"))),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => {
            return Err(ProbeError::Malformed(format!(
                "{pointer} is not an array of samples"
            )));
        }
    };
    let mut values = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let value = match item {
            serde_json::Value::Null => continue,
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match value {
            Some(v) if v.is_finite() => values.push(v),
            Some(_) => {}
            None => {
                return Err(ProbeError::Malformed(format!(
                    "{pointer}/{i} is not a number"
                )));
            }
        }
    }
    Ok(Found::Samples(values))
}

/// The number at `pointer`. A missing key or `null` is no data, and so are NaN, infinities and
/// numbers too large to hold (see `number`); anything else but a number (or a string holding
/// one) is an unusable answer.
pub fn extract(body: &[u8], pointer: &str) -> Result<Found, ProbeError> {
    let not_json =
        |e: serde_json::Error| ProbeError::Malformed(format!("the body is not JSON: {e}"));
    let document: serde_json::Value = match serde_json::from_slice(body) {
        Ok(document) => document,
        // serde_json refuses a whole document over one number it cannot hold, wherever it is.
        Err(e) if e.to_string().starts_with("number out of range") => {
            serde_json::from_slice(&quote_huge_numbers(body)).map_err(not_json)?
        }
        Err(e) => return Err(not_json(e)),
    };
    match document.pointer(pointer) {
        None => Ok(Found::NoData(format!("the document has no {pointer}"))),
        Some(serde_json::Value::Null) => Ok(Found::NoData(format!("{pointer} is null"))),
        Some(serde_json::Value::Number(n)) => {
            Ok(number(n.as_f64().unwrap_or(f64::INFINITY), &n.to_string()))
        }
        Some(serde_json::Value::String(s)) => {
            s.trim().parse::<f64>().map(|v| number(v, s)).map_err(|_| {
                let shown: String = s.chars().take(80).collect();
                ProbeError::Malformed(format!("{pointer} is the string {shown:?}, not a number"))
            })
        }
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

/// Rewrites each number literal too large for a 64-bit float as a string holding it (`1e309`
/// becomes `"1e309"`), which `extract` reads as it reads any number in a string; everything
/// else, and a document that is not JSON, stays as it was.
fn quote_huge_numbers(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        let byte = body[i];
        if in_string {
            // An escaped character (`\"`) is copied with its backslash and ends nothing.
            let len = if byte == b'\\' { 2 } else { 1 };
            out.extend_from_slice(&body[i..(i + len).min(body.len())]);
            in_string = byte != b'"';
            i += len;
        } else if byte == b'-' || byte.is_ascii_digit() {
            // Outside strings, only a number starts with a digit or `-`.
            let end = body[i..]
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(body.len(), |n| i + n);
            let literal = &body[i..end];
            let huge = std::str::from_utf8(literal)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_infinite);
            if huge {
                out.push(b'"');
                out.extend_from_slice(literal);
                out.push(b'"');
            } else {
                out.extend_from_slice(literal);
            }
            i = end;
        } else {
            in_string = byte == b'"';
            out.push(byte);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_data(what: &str) -> Result<Found, ProbeError> {
        Ok(Found::NoData(what.to_string()))
    }

    #[test]
    fn reads_numbers_at_pointers() {
        let body = br#"{"canary":{"latency_p99_ms":212.5,"errors":"0.01","gone":null,"ok":true},"a/b":{"~x":3}}"#;
        assert_eq!(
            extract(body, "/canary/latency_p99_ms"),
            Ok(Found::Value(212.5))
        );
        assert_eq!(extract(body, "/canary/errors"), Ok(Found::Value(0.01)));
        assert_eq!(extract(body, "/a~1b/~0x"), Ok(Found::Value(3.0)));
        assert_eq!(
            extract(body, "/canary/gone"),
            no_data("/canary/gone is null")
        );
        assert_eq!(
            extract(body, "/canary/missing"),
            no_data("the document has no /canary/missing")
        );
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

    /// The same rule as the other sources: NaN, infinities and numbers too large to hold are
    /// no data, and say so; one such number does not spoil the rest of the document.
    #[test]
    fn non_finite_numbers_are_no_data() {
        let too_large = "a number too large for a 64-bit float";
        let body = br#"{"huge":1e309,"minus":-2e400,"big":1e308,"s":"x\"1e999","nan":"NaN","inf":"+Inf","neg":"-infinity","quoted":"1e309","list":[1E+999,0.5]}"#;
        let cases = [
            (
                "/huge",
                no_data(&format!("the source returned 1e309, {too_large}")),
            ),
            (
                "/minus",
                no_data(&format!("the source returned -2e400, {too_large}")),
            ),
            (
                "/quoted",
                no_data(&format!("the source returned 1e309, {too_large}")),
            ),
            (
                "/list/0",
                no_data(&format!("the source returned 1E+999, {too_large}")),
            ),
            ("/nan", no_data("the source returned NaN")),
            ("/inf", no_data("the source returned +Inf")),
            ("/neg", no_data("the source returned -Inf")),
            ("/big", Ok(Found::Value(1e308))),
            ("/list/1", Ok(Found::Value(0.5))),
        ];
        for (pointer, expected) in cases {
            assert_eq!(extract(body, pointer), expected, "{pointer}");
        }
        // A string that merely looks like a huge number is left alone.
        assert!(matches!(extract(body, "/s"), Err(ProbeError::Malformed(_))));
        // Still not JSON: the error is about the body, not the number.
        let err = extract(b"{\"a\": 1e309,", "/a").unwrap_err().to_string();
        assert!(
            err.starts_with("unusable answer: the body is not JSON: EOF"),
            "{err}"
        );
    }
}
