//! `type = "slack"`: a Slack incoming webhook gets one line per event, as the plain log says it.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::{Channel, SetupError, resolve_url};
use crate::event::Stamped;
use crate::plan::Notify;

pub struct Slack {
    url: reqwest::Url,
}

impl Slack {
    pub fn resolve(spec: &Notify) -> Result<Slack, SetupError> {
        Ok(Slack {
            url: resolve_url(spec)?,
        })
    }
}

impl Channel for Slack {
    fn url(&self) -> &reqwest::Url {
        &self.url
    }

    fn body(&self, name: &str, stamped: &Stamped) -> Option<Vec<u8>> {
        let line =
            crate::report::text::line(&stamped.event, crate::report::text::Verbosity::Normal)?;
        serde_json::to_vec(&serde_json::json!({ "text": format!("[{name}] {line}") })).ok()
    }

    fn headers(&self, _body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
    }
}
