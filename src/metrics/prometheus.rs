//! `type = "prometheus"`: instant queries against `/api/v1/query`, evaluated at the time the
//! engine asks for (`time=`); a judged metric's window through `/api/v1/query_range`.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use super::range::{RangeQuery, RangeSeries, samples};
use super::{
    Found, Probe, ProbeError, Redactor, SampleWindow, Which, number, rfc3339, transport_error,
};
use crate::plan::Reduce;

pub struct Prometheus {
    /// A judged metric's window: its reads are range queries.
    pub window: Option<SampleWindow>,
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
    Matrix(Vec<RangeSeries>),
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

    fn path(&self) -> &'static str {
        match self.window {
            Some(_) => "/api/v1/query_range",
            None => "/api/v1/query",
        }
    }

    /// The parameters a reading at `at` sends, beside the query.
    fn params(&self, at: SystemTime) -> Vec<(&'static str, String)> {
        match self.window {
            Some(window) => RangeQuery::ending(at, window).params(),
            None => vec![("time", rfc3339(at))],
        }
    }
}

#[async_trait]
impl Probe for Prometheus {
    fn describe(&self, which: Which) -> String {
        let over = self.window.map_or_else(String::new, |w| {
            format!(
                " (every sample of the last {} at {} resolution)",
                humantime::format_duration(w.length),
                humantime::format_duration(w.step)
            )
        });
        format!(
            "GET {}{}?query={}{over}",
            self.url_shown.trim_end_matches('/'),
            self.path(),
            self.query_for(which)
        )
    }

    fn sent(&self, which: Which, at: SystemTime) -> String {
        let params: String = self
            .params(at)
            .iter()
            .map(|(k, v)| format!("&{k}={v}"))
            .collect();
        let sent = format!(
            "GET {}{}?query={}{params}",
            self.url_shown.trim_end_matches('/'),
            self.path(),
            self.query_for(which)
        );
        self.redactor.redact(&sent)
    }

    async fn read(&self, which: Which, at: SystemTime) -> Result<Found, ProbeError> {
        self.get(which, at)
            .await
            .map_err(|e| e.redacted(&self.redactor))
    }
}

impl Prometheus {
    async fn get(&self, which: Which, at: SystemTime) -> Result<Found, ProbeError> {
        let mut params = vec![("query", self.query_for(which).to_string())];
        params.extend(self.params(at));
        let url = format!("{}{}", self.base_url.trim_end_matches('/'), self.path());
        let (status, body) =
            fetch(&self.client, &url, &self.headers, &params, self.timeout).await?;
        match self.window {
            Some(_) => interpret_range(status, &body, &self.redactor).map(|s| samples(&s)),
            None => interpret(status, &body, self.reduce, &self.redactor),
        }
    }
}

impl Prometheus {
    /// One range query of the metric's query (or baseline), whatever the metric's own reads.
    pub async fn range(
        &self,
        which: Which,
        q: &RangeQuery,
    ) -> Result<Vec<RangeSeries>, ProbeError> {
        let mut params = vec![("query", self.query_for(which).to_string())];
        params.extend(q.params());
        let url = format!("{}/api/v1/query_range", self.base_url.trim_end_matches('/'));
        let fetched = fetch(&self.client, &url, &self.headers, &params, self.timeout).await;
        fetched
            .and_then(|(status, body)| interpret_range(status, &body, &self.redactor))
            .map_err(|e| e.redacted(&self.redactor))
    }

    /// That range query as sent, for the evidence.
    pub fn sent_range(&self, which: Which, q: &RangeQuery) -> String {
        let params: String = q
            .params()
            .iter()
            .map(|(k, v)| format!("&{k}={v}"))
            .collect();
        let sent = format!(
            "GET {}/api/v1/query_range?query={}{params}",
            self.url_shown.trim_end_matches('/'),
            self.query_for(which)
        );
        self.redactor.redact(&sent)
    }

    /// How many series `selector` matched at any moment of the hour before `at`: what a hint
    /// about an empty answer needs.
    pub async fn series_count(&self, selector: &str, at: SystemTime) -> Result<usize, ProbeError> {
        let params = vec![
            ("query", format!("count(last_over_time({selector}[1h]))")),
            ("time", rfc3339(at)),
        ];
        let url = format!("{}/api/v1/query", self.base_url.trim_end_matches('/'));
        let (status, body) = fetch(&self.client, &url, &self.headers, &params, self.timeout)
            .await
            .map_err(|e| e.redacted(&self.redactor))?;
        match interpret(status, &body, None, &self.redactor)? {
            Found::Value(n) => Ok(n as usize),
            _ => Ok(0),
        }
    }

    /// The query (or baseline) as written in the plan.
    pub fn query_text(&self, which: Which) -> &str {
        self.query_for(which)
    }

    pub fn has_baseline(&self) -> bool {
        self.baseline.is_some()
    }

    pub fn reduce(&self) -> Option<Reduce> {
        self.reduce
    }
}

/// One GET with the source's headers and timeout: the status and the body.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    params: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ProbeError> {
    let response = client
        .get(url)
        .headers(headers.clone())
        .query(params)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    Ok((status.as_u16(), body.to_vec()))
}

/// Turns Prometheus's answer into a value. Public for unit tests over recorded answers.
/// `redactor` is for the body quoted in errors (the caller redacts the rest).
pub fn interpret(
    status: u16,
    body: &[u8],
    reduce: Option<Reduce>,
    redactor: &Redactor,
) -> Result<Found, ProbeError> {
    match parse(status, body, redactor)? {
        Data::Scalar((_, value)) => parse_value(&value),
        Data::Vector(samples) => reduce_samples(samples, reduce),
        Data::Matrix(_) => Err(ProbeError::Malformed(
            "the query returned a range vector; use an instant query (e.g. wrap it in rate(...[1m]))".into(),
        )),
        Data::String(_) => Err(ProbeError::Malformed("the query returned a string, not a number".into())),
    }
}

/// A range query's answer: every series with its points.
pub fn interpret_range(
    status: u16,
    body: &[u8],
    redactor: &Redactor,
) -> Result<Vec<RangeSeries>, ProbeError> {
    match parse(status, body, redactor)? {
        Data::Matrix(series) => Ok(series),
        _ => Err(ProbeError::Malformed(
            "a range query did not answer a matrix".into(),
        )),
    }
}

/// An instant vector given as its values (one per series), judged by the same rules as an
/// instant query's answer (`reduce`, NaN, empty).
pub fn instant_vector(values: &[&str], reduce: Option<Reduce>) -> Result<Found, ProbeError> {
    let samples = values
        .iter()
        .map(|v| Sample {
            value: (0.0, v.to_string()),
        })
        .collect();
    reduce_samples(samples, reduce)
}

fn parse(status: u16, body: &[u8], redactor: &Redactor) -> Result<Data, ProbeError> {
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
    response
        .data
        .ok_or_else(|| ProbeError::Malformed("the response has no data".into()))
}

fn reduce_samples(samples: Vec<Sample>, reduce: Option<Reduce>) -> Result<Found, ProbeError> {
    let values: Vec<Found> = samples
        .iter()
        .map(|s| parse_value(&s.value.1))
        .collect::<Result<_, _>>()?;
    match (values.as_slice(), reduce) {
        ([], _) => Ok(Found::NoData("the query returned an empty vector".into())),
        ([one], _) => Ok(one.clone()),
        (many, None) => Err(ProbeError::Malformed(format!(
            "the query returned {} series; aggregate it (e.g. sum(...)) or set reduce = \"max\", \"min\", \"sum\" or \"avg\"",
            many.len()
        ))),
        (many, Some(how)) => {
            let finite: Vec<f64> = many.iter().filter_map(Found::value).collect();
            if finite.is_empty() {
                return Ok(Found::NoData(format!(
                    "the source returned NaN or an infinity for all {} series",
                    many.len()
                )));
            }
            let sum: f64 = finite.iter().sum();
            let (name, reduced) = match how {
                Reduce::Max => ("max", finite.iter().copied().fold(f64::MIN, f64::max)),
                Reduce::Min => ("min", finite.iter().copied().fold(f64::MAX, f64::min)),
                Reduce::Sum => ("sum", sum),
                Reduce::Avg => ("avg", sum / finite.len() as f64),
            };
            // Finite values can still add up past a 64-bit float's range.
            if !reduced.is_finite() {
                return Ok(Found::NoData(format!(
                    "the {name} of the series is too large for a 64-bit float"
                )));
            }
            Ok(Found::Value(reduced))
        }
    }
}

/// Prometheus sends sample values as strings: "0.5", "NaN", "+Inf".
fn parse_value(text: &str) -> Result<Found, ProbeError> {
    text.parse::<f64>().map(|v| number(v, text)).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        ProbeError::Malformed(format!("`{shown}` is not a number"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Found, ProbeError> {
        interpret(200, body.as_bytes(), None, &Redactor::default())
    }

    #[test]
    fn reads_scalars_and_single_series() {
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.25"]}}"#
            ),
            Ok(Found::Value(0.25))
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"track":"canary"},"value":[1700000000,"0.02"]}]}}"#
            ),
            Ok(Found::Value(0.02))
        );
    }

    /// The same rule as the other sources: NaN, infinities and numbers too large to hold are
    /// no data, and say so.
    #[test]
    fn nan_infinity_and_empty_vectors_are_no_data() {
        let scalar = |v: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{v}"]}}}}"#)
        };
        let series = |v: &str| {
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{v}"]}}]}}}}"#
            )
        };
        let no_data = |what: &str| Ok(Found::NoData(what.to_string()));
        let cases = [
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
                no_data("the query returned an empty vector"),
            ),
            (scalar("NaN"), no_data("the source returned NaN")),
            (scalar("-Inf"), no_data("the source returned -Inf")),
            (series("+Inf"), no_data("the source returned +Inf")),
            (series("NaN"), no_data("the source returned NaN")),
            (
                series("1e309"),
                no_data("the source returned 1e309, a number too large for a 64-bit float"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(ok(&body), expected, "{body}");
        }
    }

    #[test]
    fn several_series_need_a_reduce() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"1"]},{"metric":{"i":"b"},"value":[1,"3"]},{"metric":{"i":"c"},"value":[1,"NaN"]}]}}"#;
        let err = ok(body).unwrap_err();
        assert!(err.to_string().contains("returned 3 series"), "{err}");
        let with = |r| interpret(200, body.as_bytes(), Some(r), &Redactor::default()).unwrap();
        assert_eq!(with(Reduce::Max), Found::Value(3.0));
        assert_eq!(with(Reduce::Min), Found::Value(1.0));
        assert_eq!(with(Reduce::Sum), Found::Value(4.0));
        assert_eq!(with(Reduce::Avg), Found::Value(2.0));
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"+Inf"]},{"metric":{"i":"b"},"value":[1,"NaN"]}]}}"#;
        assert_eq!(
            interpret(
                200,
                body.as_bytes(),
                Some(Reduce::Max),
                &Redactor::default()
            ),
            Ok(Found::NoData(
                "the source returned NaN or an infinity for all 2 series".into()
            ))
        );
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"i":"a"},"value":[1,"1e308"]},{"metric":{"i":"b"},"value":[1,"1e308"]}]}}"#;
        assert_eq!(
            interpret(
                200,
                body.as_bytes(),
                Some(Reduce::Sum),
                &Redactor::default()
            ),
            Ok(Found::NoData(
                "the sum of the series is too large for a 64-bit float".into()
            ))
        );
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
