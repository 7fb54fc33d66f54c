//! `type = "prometheus"`: instant queries against `/api/v1/query`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Probe, ProbeError, Redactor, Which, finite, transport_error};
use crate::plan::Reduce;

pub struct Prometheus {
    pub client: reqwest::Client,
    pub base_url: String,
    /// The URL as the plan writes it (`${VAR}`s unresolved), for messages.
    pub url_shown: String,
    pub headers: reqwest::header::HeaderMap,
    pub timeout: Duration,
    pub query: String,
    pub baseline: Option<String>,
    pub reduce: Option<Reduce>,
    pub redactor: Redactor,
}

#[derive(Deserialize)]
struct Response {
    status: String,
    data: Option<Data>,
    error: Option<String>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Scalar((f64, String)),
    Vector(Vec<Sample>),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

impl Prometheus {
    fn query_for(&self, which: Which) -> &str {
        match which {
            Which::Value => &self.query,
            Which::Baseline => self.baseline.as_deref().unwrap_or(&self.query),
        }
    }

    fn endpoint(&self) -> String {
        format!("{}/api/v1/query", self.base_url.trim_end_matches('/'))
    }
}

#[async_trait]
impl Probe for Prometheus {
    fn describe(&self, which: Which) -> String {
        format!(
            "GET {}/api/v1/query?query={}",
            self.url_shown.trim_end_matches('/'),
            self.query_for(which)
        )
    }

    async fn read(&self, which: Which) -> Result<Option<f64>, ProbeError> {
        self.get(which).await.map_err(|e| self.redactor.error(e))
    }
}

impl Prometheus {
    async fn get(&self, which: Which) -> Result<Option<f64>, ProbeError> {
        let request = self
            .client
            .get(self.endpoint())
            .headers(self.headers.clone())
            .query(&[("query", self.query_for(which))])
            .timeout(self.timeout);
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        interpret(status.as_u16(), &body, self.reduce, &self.redactor)
    }
}

/// Turns Prometheus's answer into a value. Public for unit tests over recorded answers.
/// `redactor` is for the body quoted in errors (the caller redacts the rest).
pub fn interpret(
    status: u16,
    body: &[u8],
    reduce: Option<Reduce>,
    redactor: &Redactor,
) -> Result<Option<f64>, ProbeError> {
    let parsed: Result<Response, _> = serde_json::from_slice(body);
    let response = match parsed {
        Ok(r) => r,
        Err(e) if (200..300).contains(&status) => {
            return Err(ProbeError::Malformed(format!(
                "not a Prometheus API response: {e}"
            )));
        }
        Err(_) => {
            return Err(ProbeError::Http {
                status,
                message: redactor.snippet(body),
            });
        }
    };
    if response.status != "success" {
        let message = match (response.error_type, response.error) {
            (Some(t), Some(e)) => format!("{t}: {e}"),
            (None, Some(e)) => e,
            _ => redactor.snippet(body),
        };
        return Err(ProbeError::Http { status, message });
    }
    match response.data {
        Some(Data::Scalar((_, value))) => parse_value(&value),
        Some(Data::Vector(samples)) => reduce_samples(samples, reduce),
        Some(Data::Matrix(_)) => Err(ProbeError::Malformed(
            "the query returned a range vector; use an instant query (e.g. wrap it in rate(...[1m]))".into(),
        )),
        Some(Data::String(_)) => Err(ProbeError::Malformed("the query returned a string, not a number".into())),
        None => Err(ProbeError::Malformed("the response has no data".into())),
    }
}

fn reduce_samples(samples: Vec<Sample>, reduce: Option<Reduce>) -> Result<Option<f64>, ProbeError> {
    let values: Vec<Option<f64>> = samples
        .iter()
        .map(|s| parse_value(&s.value.1))
        .collect::<Result<_, _>>()?;
    match (values.as_slice(), reduce) {
        ([], _) => Ok(None),
        ([one], _) => Ok(*one),
        (many, None) => Err(ProbeError::Malformed(format!(
            "the query returned {} series; aggregate it (e.g. sum(...)) or set reduce = \"max\", \"min\", \"sum\" or \"avg\"",
            many.len()
        ))),
        (many, Some(how)) => {
            let finite: Vec<f64> = many.iter().flatten().copied().collect();
            if finite.is_empty() {
                return Ok(None);
            }
            let sum: f64 = finite.iter().sum();
            Ok(Some(match how {
                Reduce::Max => finite.iter().copied().fold(f64::MIN, f64::max),
                Reduce::Min => finite.iter().copied().fold(f64::MAX, f64::min),
                Reduce::Sum => sum,
                Reduce::Avg => sum / finite.len() as f64,
            }))
        }
    }
}

/// Prometheus sends sample values as strings: "0.5", "NaN", "+Inf".
fn parse_value(text: &str) -> Result<Option<f64>, ProbeError> {
    text.parse::<f64>().map(finite).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        ProbeError::Malformed(format!("`{shown}` is not a number"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Option<f64>, ProbeError> {
        interpret(200, body.as_bytes(), None, &Redactor::default())
    }

    #[test]
    fn reads_scalars_and_single_series() {
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.25"]}}"#
            ),
            Ok(Some(0.25))
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"track":"canary"},"value":[1700000000,"0.02"]}]}}"#
            ),
            Ok(Some(0.02))
        );
    }

    #[test]
    fn nan_infinity_and_empty_vectors_are_no_data() {
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Ok(None)
        );
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#),
            Ok(None)
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}"#
            ),
            Ok(None)
        );
    }

    #[test]
    fn several_series_need_a_reduce() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"1"]},{"metric":{"i":"b"},"value":[1,"3"]},{"metric":{"i":"c"},"value":[1,"NaN"]}]}}"#;
        let err = ok(body).unwrap_err();
        assert!(err.to_string().contains("returned 3 series"), "{err}");
        let with = |r| interpret(200, body.as_bytes(), Some(r), &Redactor::default()).unwrap();
        assert_eq!(with(Reduce::Max), Some(3.0));
        assert_eq!(with(Reduce::Min), Some(1.0));
        assert_eq!(with(Reduce::Sum), Some(4.0));
        assert_eq!(with(Reduce::Avg), Some(2.0));
    }

    #[test]
    fn errors_carry_the_server_message() {
        let err = interpret(400, br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5: unexpected \")\""}"#, None, &Redactor::default())
            .unwrap_err();
        assert_eq!(
            err,
            ProbeError::Http {
                status: 400,
                message: "bad_data: parse error at char 5: unexpected \")\"".into()
            }
        );
        let err =
            interpret(502, b"<html>Bad Gateway</html>", None, &Redactor::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the source answered HTTP 502: <html>Bad Gateway</html>"
        );
        let err = interpret(200, b"{\"status\":", None, &Redactor::default()).unwrap_err();
        assert!(matches!(err, ProbeError::Malformed(_)), "{err}");
        let err =
            ok(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap_err();
        assert!(err.to_string().contains("range vector"), "{err}");
    }
}
