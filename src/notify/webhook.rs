//! `type = "webhook"`: the event exactly as `--output json` writes it, with the target's own
//! headers, signed with HMAC-SHA256 when it has a `secret`.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use super::{Channel, SetupError, invalid, resolve, resolve_url};
use crate::event::Stamped;
use crate::plan::template::Template;
use crate::plan::{Headers, Notify};

pub struct Webhook {
    url: reqwest::Url,
    headers: HeaderMap,
    secret: Option<Vec<u8>>,
}

impl Webhook {
    pub fn resolve(
        spec: &Notify,
        wanted: &Headers,
        secret: Option<&Template>,
    ) -> Result<Webhook, SetupError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in wanted {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(spec, &format!("`{name}` is not a header name")))?;
            let mut value = HeaderValue::from_str(&resolve(spec, value)?).map_err(|_| {
                invalid(spec, &format!("the value of header `{name}` is not valid"))
            })?;
            // Keeps the value out of any Debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let secret = secret
            .map(|s| resolve(spec, s))
            .transpose()?
            .map(String::into_bytes);
        Ok(Webhook {
            url: resolve_url(spec)?,
            headers,
            secret,
        })
    }
}

impl Channel for Webhook {
    fn url(&self) -> &reqwest::Url {
        &self.url
    }

    fn body(&self, _name: &str, stamped: &Stamped) -> Option<Vec<u8>> {
        serde_json::to_vec(stamped).ok()
    }

    fn headers(&self, body: &[u8]) -> HeaderMap {
        let mut headers = self.headers.clone();
        if let Some(secret) = &self.secret
            && let Ok(value) = HeaderValue::from_str(&signature(secret, body))
        {
            headers.insert("X-Rollout-Signature", value);
        }
        headers
    }
}

/// `sha256=HEX`: HMAC-SHA256 of the body with the secret, as `X-Rollout-Signature` carries it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", crate::plan::hex(&bytes))
}
