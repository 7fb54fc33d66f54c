//! Secrets out of what sources say. A source may quote the request back (an error page that
//! echoes its headers, a proxy's diagnostic, a query echoed in a parse error); what it says
//! goes to the terminal, the journal and reports, so every secret is replaced before it is shown
//! or stored. The same goes for what commands print (a hook that echoes its environment).

use std::sync::Arc;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// How much of a body an HTTP error message quotes.
const SNIPPET_CHARS: usize = 200;

/// The plan's secret values, shared by every probe.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is replaced whole.
    secrets: Arc<[String]>,
}

impl Redactor {
    /// Each value is also looked for as it reads once escaped in a JSON or a quoted string:
    /// a source that echoes a header inside its JSON error escapes `"` and `\`.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets = Vec::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            let json = serde_json::to_string(&value).expect("a string serializes");
            let debug = format!("{value:?}");
            secrets.push(json[1..json.len() - 1].to_string());
            secrets.push(debug[1..debug.len() - 1].to_string());
            secrets.push(value);
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor {
            secrets: secrets.into(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// The start of a body, for an error message: redacted before it is cut, so that no part
    /// of a secret is left at the cut.
    pub fn snippet(&self, body: &[u8]) -> String {
        let text = self.redact(String::from_utf8_lossy(body).trim());
        match text.char_indices().nth(SNIPPET_CHARS) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret_as_written_and_as_escaped() {
        let r = Redactor::new(["s3cr\"et".to_string(), "Bearer s3cr\"et".to_string()]);
        assert_eq!(
            r.redact(r#"got Bearer s3cr"et and s3cr"et, {"h":"s3cr\"et"}"#),
            r#"got [redacted] and [redacted], {"h":"[redacted]"}"#
        );
        assert_eq!(Redactor::new([String::new()]).redact("text"), "text");
    }

    #[test]
    fn a_snippet_is_redacted_before_it_is_cut() {
        let secret = "abcdefghij".repeat(3);
        let r = Redactor::new([secret.clone()]);
        let body = format!("{}{secret}", "x".repeat(SNIPPET_CHARS - 5));
        let snippet = r.snippet(body.as_bytes());
        assert!(!snippet.contains("abcde"), "{snippet}");
        assert!(snippet.ends_with("xxxxx[reda..."), "{snippet}");
    }
}
