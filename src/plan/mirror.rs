//! Shadow traffic (`mirror = P` on a stage) and what the proxies need to mirror requests and
//! route segments: nginx's `location_file`, the `mirror_methods` of nginx and kubectl gateway,
//! and the checks that span the backend and the stages (which backend can mirror, at which
//! precision, whether nginx has the file its segments and mirror are written to).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostic::Diagnostic;
use super::model::{Backend, KubectlBackend, KubectlMode, NginxBackend, Stage, Weight};
use super::raw::RawStage;
use super::reader::{At, Cx, Table, join, suggest};
use super::segments::{is_token, lists_segments};

/// The methods a mirror may copy: the Gateway API's, which nginx knows too.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Safe methods: a copy of them changes nothing on the new version's side.
pub const SAFE_METHODS: [&str; 2] = ["GET", "HEAD"];

/// nginx's `split_clients` takes percentages with two decimals.
pub const NGINX_MIRROR_STEPS_PER_PERCENT: u64 = 100;

/// A Gateway API mirror fraction is written out of at most 100,000.
pub const GATEWAY_MIRROR_STEPS_PER_PERCENT: u64 = 1000;

/// Whether a stage gets traffic even at weight 0: segments, or mirrored copies.
pub fn gets_traffic(raw: &RawStage) -> bool {
    lists_segments(raw) || stage_mirror(raw).is_some()
}

/// The stage's mirror share; `mirror = 0` mirrors nothing.
pub fn stage_mirror(raw: &RawStage) -> Option<Weight> {
    let share = Weight::new(raw.mirror.as_ref()?.value)?;
    (!share.is_zero()).then_some(share)
}

/// `mirror_methods`, checked; GET and HEAD when it is not given. `None` when it is invalid.
pub fn read_methods(table: &Table<'_, '_>) -> Option<Vec<String>> {
    let Some(f) = table.field("mirror_methods") else {
        return Some(SAFE_METHODS.map(String::from).to_vec());
    };
    let list = f.get().strings("mirror_methods = [\"GET\", \"HEAD\"]")?;
    if list.is_empty() {
        table.push(
            f.error("the list is empty: a mirror would copy nothing")
                .label("empty")
                .help("leave mirror_methods out to mirror GET and HEAD, or list methods, e.g. [\"GET\", \"HEAD\", \"POST\"]"),
        );
        return None;
    }
    let mut methods: Vec<String> = Vec::new();
    let mut ok = true;
    for method in &list {
        let problem = if !METHODS.contains(&method.value.as_str()) {
            Some(unknown_method(&method.value))
        } else if methods.contains(&method.value) {
            Some((
                format!("`{}` is listed twice", method.value),
                "duplicate".into(),
                "list each method once".into(),
            ))
        } else {
            None
        };
        match problem {
            Some((message, label, help)) => {
                ok = false;
                table.push(
                    Diagnostic::error(f.path(), method.span.clone(), message)
                        .label(label)
                        .help(help),
                );
            }
            None => methods.push(method.value.clone()),
        }
    }
    ok.then_some(methods)
}

fn unknown_method(method: &str) -> (String, String, String) {
    let upper = method.to_ascii_uppercase();
    let help = match suggest(&upper, METHODS) {
        Some(close) => format!("did you mean \"{close}\"? Methods are written in capitals"),
        None => format!("valid methods: {}", METHODS.join(", ")),
    };
    (
        format!("`{method}` is not an HTTP method rollout can mirror"),
        "unknown method".into(),
        help,
    )
}

/// nginx's own default for a proxied request is a minute; a copy should give up long before a
/// kept-alive client notices.
pub const DEFAULT_MIRROR_TIMEOUT: Duration = Duration::from_secs(1);

/// `mirror_timeout`, checked: nginx takes whole milliseconds. `None` when it is invalid.
pub fn read_timeout(table: &Table<'_, '_>) -> Option<Duration> {
    let Some(f) = table.field("mirror_timeout") else {
        return Some(DEFAULT_MIRROR_TIMEOUT);
    };
    let f = f.get();
    let timeout = f.positive_duration()?;
    if timeout.subsec_nanos() % 1_000_000 == 0 && timeout >= Duration::from_millis(1) {
        return Some(timeout);
    }
    table.push(
        f.error("nginx takes timeouts in whole milliseconds")
            .label("not a whole number of milliseconds")
            .help("e.g. mirror_timeout = \"250ms\""),
    );
    None
}

/// `location_file`: `Some(None)` when it is not given, `None` when it is invalid.
pub fn read_location_file(
    table: &Table<'_, '_>,
    upstream_file: Option<&Path>,
) -> Option<Option<PathBuf>> {
    let Some(f) = table.field("location_file") else {
        return Some(None);
    };
    let f = f.get();
    let text = f.str()?;
    if text.trim().is_empty() {
        table.push(f.error("must not be empty").label("empty"));
        return None;
    }
    let path = PathBuf::from(text);
    if upstream_file == Some(path.as_path()) {
        table.push(
            f.error("is the upstream_file: the two files are included in different places")
                .label("same file as upstream_file")
                .help("upstream_file goes inside `http { }`, location_file inside the location that proxies to the upstream; give each its own path"),
        );
        return None;
    }
    Some(Some(path))
}

/// A cookie, or a header of any value, can only be a regular-expression header match on an
/// HTTPRoute, which the Gateway API leaves to each implementation: said once per segment, so
/// that nobody learns it from a Gateway that quietly ignores the rule.
pub fn warn_gateway_regex_segments(table: &Table<'_, '_>) {
    let Some(segments) = table.peek("segments").and_then(|f| f.peek_table()) else {
        return;
    };
    for (name, f) in segments.entries() {
        let Some(segment) = f.peek_table() else {
            continue;
        };
        let (field, what) = match (segment.peek("header"), segment.peek("cookie")) {
            (Some(header), None) if segment.peek("value").is_none() => {
                (header, "a header of any value")
            }
            (None, Some(cookie)) => (cookie, "a cookie"),
            _ => continue,
        };
        table.push(
            Diagnostic::warning(
                field.path(),
                field.span(),
                format!(
                    "segment `{}` matches {what}, which the route can only test with a regular expression",
                    name.value
                ),
            )
            .label("a RegularExpression header match")
            .help("the Gateway API leaves regular-expression header matches to each implementation (Envoy Gateway, Istio and NGINX Gateway Fabric support them); check yours does, or match a header with an exact `value`"),
        );
    }
}

/// Segment header names nginx can match: it reads a header through `$http_NAME`, whose name
/// takes letters, digits and `-` (as `_`); nginx drops headers with `_` unless told otherwise.
pub fn check_nginx_segment_headers(table: &Table<'_, '_>) {
    let Some(segments) = table.peek("segments").and_then(|f| f.peek_table()) else {
        return;
    };
    for (name, f) in segments.entries() {
        let Some(header) = f.peek_table().and_then(|t| t.peek("header")) else {
            continue;
        };
        let Some(text) = header.peek_str() else {
            continue;
        };
        let nginx_can = text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // A name that is no header name at all is reported where segments are read.
        if nginx_can || !is_token(text) {
            continue;
        }
        table.push(
            header
                .error(format!(
                    "nginx cannot match the header `{text}` of segment `{}`",
                    name.value
                ))
                .label("only letters, digits and `-` here")
                .help("nginx reads a request header through a $http_ variable, which takes letters, digits and `-` (and ignores headers with `_` by default); use a name such as \"X-Canary\""),
        );
    }
}

/// What spans the backend and the stages: which backend can mirror and at which precision,
/// and nginx's `location_file` for mirror and segments.
pub fn check(cx: &Cx, backend: &Backend, stages: &[Stage], raw: &[RawStage]) {
    let mirrored = stages.iter().zip(raw).filter_map(|(stage, raw_stage)| {
        let field = raw_stage.mirror.as_ref()?;
        Some((stage, stage.mirror?, join(&raw_stage.path, "mirror"), field))
    });
    for (i, (stage, share, path, field)) in mirrored.enumerate() {
        let place = Place { stage, path, field };
        if let Backend::Nginx(spec) = backend
            && i == 0
        {
            needs_dump(cx, spec, &place);
        }
        check_stage(cx, backend, share, &place);
    }
    if let Backend::Nginx(nginx) = backend
        && nginx.location_file.is_none()
    {
        needs_location_file(cx, nginx, raw);
    }
}

/// A stage's `mirror` field, for pointing at it.
struct Place<'s> {
    stage: &'s Stage,
    path: String,
    field: &'s At<f64>,
}

impl Place<'_> {
    fn error(&self, message: String) -> Diagnostic {
        Diagnostic::error(&self.path, self.field.span.clone(), message)
    }
}

/// nginx's mirror location goes under the location that includes `location_file`, which
/// rollout reads from nginx's own configuration dump: once per plan, at the first mirror.
fn needs_dump(cx: &Cx, spec: &NginxBackend, place: &Place<'_>) {
    if spec.location_file.is_none() || spec.dump_command().is_some() {
        return;
    }
    cx.push(
        place
            .error(format!("stage {} mirrors requests, but rollout cannot read nginx's configuration to place the mirror", place.stage.number))
            .label("needs `nginx -T`")
            .help("rollout puts the mirror's location under the location that includes location_file, which it reads from nginx's configuration dump: run nginx with -t directly in test_command (or behind a prefix such as sudo or docker exec NAME)"),
    );
}

fn check_stage(cx: &Cx, backend: &Backend, share: Weight, place: &Place<'_>) {
    let number = place.stage.number;
    let steps = match backend {
        Backend::Nginx(_) => NGINX_MIRROR_STEPS_PER_PERCENT,
        Backend::Kubectl(KubectlBackend {
            mode: KubectlMode::Gateway(_),
            ..
        }) => GATEWAY_MIRROR_STEPS_PER_PERCENT,
        other => {
            cx.push(
                place
                    .error(format!("stage {number} mirrors requests, but the {} backend cannot copy them", describe(other)))
                    .label("not supported by this backend")
                    .help("mirroring works with the nginx backend (with location_file) and the kubectl backend with mode = \"gateway\"; leave `mirror` out here"),
            );
            return;
        }
    };
    if place.stage.weight.is_full() {
        cx.push(
            place
                .error(format!("stage {number} sends every request to the new version: there is nothing left to mirror"))
                .label("mirror at 100%")
                .help("mirror at a stage below 100, for example a stage with weight = 0 before the split"),
        );
    } else if share.in_steps(steps).is_none() {
        let step = 1.0 / steps as f64;
        let scaled = share.percent() * steps as f64;
        let (below, above) = (scaled.floor() / steps as f64, scaled.ceil() / steps as f64);
        let help = if below == 0.0 {
            format!("use {above}, the smallest share it samples, or leave `mirror` out")
        } else {
            format!("use {below} or {above}")
        };
        cx.push(
            place
                .error(format!(
                    "stage {number}'s mirror {share} is finer than the {} backend can sample",
                    describe(backend)
                ))
                .label(format!("not a multiple of {step}%"))
                .help(help),
        );
    }
}

pub(super) fn describe(backend: &Backend) -> String {
    match backend {
        Backend::Kubectl(KubectlBackend {
            mode: KubectlMode::Replicas(_),
            ..
        }) => "kubectl (mode = \"replicas\")".to_string(),
        Backend::Kubectl(_) => "kubectl gateway".to_string(),
        other => other.type_name().to_string(),
    }
}

/// nginx routes segments and mirrors from `location_file`; a plan that uses either without
/// it is told, once, at the first stage that does, what to add and where.
fn needs_location_file(cx: &Cx, nginx: &NginxBackend, raw: &[RawStage]) {
    let Some((index, first)) = raw.iter().enumerate().find(|(_, s)| gets_traffic(s)) else {
        return;
    };
    let (field, span, what) = match (&first.mirror, &first.segments) {
        (Some(m), _) if m.value > 0.0 => ("mirror", m.span.clone(), "mirrors requests"),
        (_, Some(s)) => ("segments", s.span.clone(), "routes segments"),
        _ => return,
    };
    let suggested = suggested_location_file(&nginx.upstream_file);
    cx.push(
        Diagnostic::error(
            join(&first.path, field),
            span,
            format!(
                "stage {} {what}, which the nginx backend does through `location_file`, and [backend] has none",
                index + 1
            ),
        )
        .label("needs location_file")
        .help(format!(
            "add location_file = \"{suggested}\" to [backend], create that file empty, and add `include {suggested};` inside the location that proxies to http://{}, before its proxy_pass",
            nginx.upstream
        )),
    );
}

/// A name next to the upstream file that `include conf.d/*.conf` does not pick up at the
/// http level, where its directives are not allowed.
fn suggested_location_file(upstream_file: &Path) -> String {
    let stem = upstream_file
        .file_stem()
        .map_or("app".into(), |s| s.to_string_lossy().into_owned());
    upstream_file
        .with_file_name(format!("{stem}-location.inc"))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_location_file_escapes_a_conf_glob() {
        assert_eq!(
            suggested_location_file(Path::new("/etc/nginx/conf.d/shop.conf")),
            "/etc/nginx/conf.d/shop-location.inc"
        );
    }
}
