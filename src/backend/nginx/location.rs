//! Mirroring and segment routing for nginx: what the upstream file adds at the http level (an
//! upstream of the new version's servers alone, and the variables that say whether a request
//! is in a segment or is to be mirrored) and the location file, included in the user's
//! location before its `proxy_pass`.
//!
//! The location file holds only what must be in that location: `if ($segment) { proxy_pass
//! http://CANARY; }` for segments, and for a mirror the `mirror` directive with a nested
//! internal location that proxies the copy to the new version. Everything computed per
//! request (`map`, `split_clients`) is at the http level, the only place nginx allows it.
//!
//! The upstream file always defines every name the location file may use, with neutral
//! values when a stage uses neither: the two files are replaced one after the other, so any
//! upstream file rollout writes is valid with any location file it writes, and a crash
//! between the two writes leaves files nginx accepts.

use crate::backend::WeightChange;
use crate::plan::{NginxBackend as Spec, SAFE_METHODS, Segment, SegmentRule};

use super::config::{Enclosing, Placement};

/// A duration as nginx reads it: whole seconds as `Ns`, anything else in milliseconds
/// (validation keeps `mirror_timeout` to whole milliseconds).
fn nginx_time(duration: std::time::Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// The names rollout gives what it defines for one upstream, so that two plans driving two
/// upstreams of one nginx do not collide.
pub struct Names {
    /// The upstream of the new version's servers alone.
    pub canary: String,
    /// The prefix of every variable: `rollout_UPSTREAM`, with what a variable name cannot
    /// hold turned into `_`.
    vars: String,
}

impl Names {
    pub fn of(upstream: &str) -> Names {
        let sanitized: String = upstream
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Names {
            canary: format!("{upstream}_rollout_canary"),
            vars: format!("rollout_{sanitized}"),
        }
    }

    fn var(&self, what: &str) -> String {
        format!("${}_{what}", self.vars)
    }

    /// The internal location of the mirror, under the user's location prefix.
    pub fn mirror_uri(&self, prefix: &str) -> String {
        let separator = if prefix.ends_with('/') { "" } else { "/" };
        format!("{prefix}{separator}_{}_mirror", self.vars)
    }
}

/// What a change routes through the location file: segments and the mirror, unless everyone
/// is on the new version already.
pub struct Routing<'a> {
    pub segments: Vec<&'a Segment>,
    pub mirror: Option<crate::plan::Weight>,
}

impl<'a> Routing<'a> {
    pub fn of(change: WeightChange, defined: &'a [Segment]) -> Routing<'a> {
        if change.weight.is_full() {
            return Routing {
                segments: Vec::new(),
                mirror: None,
            };
        }
        Routing {
            segments: change
                .segments
                .iter()
                .filter_map(|i| defined.get(i))
                .collect(),
            mirror: change.mirror,
        }
    }

    /// For the marker line and people: "segments beta, staff; mirror 5%".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.segments.is_empty() {
            let names: Vec<&str> = self.segments.iter().map(|s| s.name.as_str()).collect();
            parts.push(format!("segments {}", names.join(", ")));
        }
        if let Some(share) = self.mirror {
            parts.push(format!("mirror {share}"));
        }
        if parts.is_empty() {
            "plain proxying".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// The http-level part of the upstream file, after the upstream block.
pub fn definitions(spec: &Spec, routing: &Routing<'_>) -> String {
    let names = Names::of(&spec.upstream);
    let mut out = format!(
        "\n# What the location file uses: the new version's servers alone, and which requests\n\
         # are in a segment or mirrored.\n\
         upstream {} {{\n",
        names.canary
    );
    for server in &spec.canary {
        out.push_str(&format!("    server {server};\n"));
    }
    for line in &spec.extra {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("}\n");
    out.push_str(&segment_maps(&names, &routing.segments));
    out.push_str(&mirror_maps(&names, spec, routing.mirror));
    out
}

fn segment_maps(names: &Names, segments: &[&Segment]) -> String {
    let all = names.var("segment");
    if segments.is_empty() {
        return format!("map \"\" {all} {{ default \"\"; }}\n");
    }
    let mut out = String::new();
    let mut each = String::new();
    for segment in segments {
        let var = names.var(&format!(
            "segment_{}",
            segment.name.as_str().replace('-', "_")
        ));
        out.push_str(&format!(
            "map {} {var} {{ {} }}\n",
            source(&segment.rule),
            test(&segment.rule)
        ));
        each.push_str(&var);
    }
    out.push_str(&format!(
        "map \"{each}\" {all} {{ \"\" \"\"; default 1; }}\n"
    ));
    out
}

/// The variable a segment is read from: the header's, or all of the request's cookies.
fn source(rule: &SegmentRule) -> String {
    match rule {
        SegmentRule::Header { name, .. } => {
            format!("$http_{}", name.to_ascii_lowercase().replace('-', "_"))
        }
        _ => "$http_cookie".to_string(),
    }
}

/// The map entries that set the segment's variable to 1. Values are matched exactly, as
/// regular expressions (a map's plain strings ignore case); cookies by their name and value
/// among all of the request's (`$cookie_NAME` takes no name with `-` or `.`).
fn test(rule: &SegmentRule) -> String {
    match rule {
        SegmentRule::Header { value: None, .. } => "\"\" \"\"; default 1;".to_string(),
        SegmentRule::Header { value: Some(v), .. } => {
            format!(
                "{} 1; default \"\";",
                quote(&format!("~^{}$", regex_escape(v)))
            )
        }
        SegmentRule::Cookie { name, value } => {
            let value = value
                .as_deref()
                .map_or(String::new(), |v| format!("{}(;|$)", regex_escape(v)));
            let pattern = format!("~(^|;[ ]*){}={value}", regex_escape(name));
            format!("{} 1; default \"\";", quote(&pattern))
        }
        // Validation gives nginx request segments only; an attribute matches no request.
        SegmentRule::Attribute { .. } => "default \"\";".to_string(),
    }
}

fn mirror_maps(names: &Names, spec: &Spec, mirror: Option<crate::plan::Weight>) -> String {
    let decision = names.var("mirror");
    let Some(share) = mirror else {
        return format!("map \"\" {decision} {{ default \"\"; }}\n");
    };
    let (method, sample, segment) = (
        names.var("mirror_method"),
        names.var("mirror_sample"),
        names.var("segment"),
    );
    let methods: Vec<String> = spec
        .mirror_methods
        .iter()
        .map(|m| format!("{m} 1;"))
        .collect();
    format!(
        "map $request_method {method} {{ {} default \"\"; }}\n\
         split_clients \"${{request_id}}\" {sample} {{ {}% 1; * \"\"; }}\n\
         # Requests in a segment already go to the new version: they are not copied.\n\
         map \"{segment}:{method}:{sample}\" {decision} {{ \":1:1\" 1; default \"\"; }}\n",
        methods.join(" "),
        share.percent()
    )
}

/// The location file for a change. `placement` is where nginx includes it (known from its
/// configuration dump); a dry run, which reads no dump, shows where the mirror goes instead.
pub fn render(
    spec: &Spec,
    plan_name: &str,
    routing: &Routing<'_>,
    marker: &str,
    placement: Option<&Placement>,
) -> String {
    let names = Names::of(&spec.upstream);
    let scheme = placement.map_or("http", |p| p.scheme.as_str());
    let mut out = format!(
        "# Written by rollout for plan `{plan_name}`; it is rewritten at every stage, do not edit.\n{marker}\n"
    );
    if !routing.segments.is_empty() {
        out.push_str(&format!(
            "# Requests in a segment go to the new version's servers alone.\n\
             if ({}) {{\n    proxy_pass {scheme}://{};\n}}\n",
            names.var("segment"),
            names.canary
        ));
    }
    if let Some(share) = routing.mirror {
        let uri = match placement.map(|p| &p.location) {
            Some(Enclosing::Prefix(prefix)) => names.mirror_uri(prefix),
            _ => names.mirror_uri("<prefix of the location that includes this file>"),
        };
        out.push_str(&mirror(spec, &names, share, &uri, scheme));
    }
    out
}

fn mirror(
    spec: &Spec,
    names: &Names,
    share: crate::plan::Weight,
    uri: &str,
    scheme: &str,
) -> String {
    let methods = match spec.mirror_methods.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    // Only a method that may carry a body needs nginx to read the body before proxying.
    let safe = spec
        .mirror_methods
        .iter()
        .all(|m| SAFE_METHODS.contains(&m.as_str()));
    let body = if safe { "off" } else { "on" };
    // A kept-alive client waits for the copy of its previous request: this bounds the wait.
    let t = nginx_time(spec.mirror_timeout);
    [
        format!(
            "# A copy of {share} of the {methods} requests also goes to the new version; nginx"
        ),
        "# discards its answers, and clients get the stable version's.".to_string(),
        format!("mirror {uri};"),
        format!("mirror_request_body {body};"),
        format!("location = {uri} {{"),
        "    internal;".to_string(),
        format!("    if ({} = \"\") {{", names.var("mirror")),
        "        return 204;".to_string(),
        "    }".to_string(),
        format!("    proxy_pass {scheme}://{}$request_uri;", names.canary),
        format!("    proxy_connect_timeout {t};"),
        format!("    proxy_send_timeout {t};"),
        format!("    proxy_read_timeout {t};"),
        "}".to_string(),
        String::new(),
    ]
    .join("\n")
}

/// Every character of `text` that is not a letter or digit is escaped: matched as itself by
/// nginx's PCRE.
fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An nginx string in double quotes: `\` and `"` escaped, as nginx's parser reads them back.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::nginx::render::tests::{nginx_binary, nginx_test, spec};
    use crate::backend::nginx::render::{location_marker, marker, render as upstream_file};
    use crate::plan::{Name, SegmentSet, Weight};

    fn segments() -> Vec<Segment> {
        let segment = |name: &str, rule| Segment {
            name: Name::parse(name).unwrap(),
            rule,
        };
        vec![
            segment(
                "beta",
                SegmentRule::Header {
                    name: "X-Beta".into(),
                    value: None,
                },
            ),
            segment(
                "ios-users",
                SegmentRule::Cookie {
                    name: "platform.id".into(),
                    value: Some("ios \"17\"".into()),
                },
            ),
            segment(
                "staff",
                SegmentRule::Header {
                    name: "X-Staff".into(),
                    value: Some("a.b\\c".into()),
                },
            ),
        ]
    }

    fn with_location() -> Spec {
        let mut spec = spec(&["127.0.0.1:9001"], &["127.0.0.1:9002", "127.0.0.1:9003"]);
        spec.location_file = Some("/etc/nginx/app-location.inc".into());
        spec
    }

    fn change(weight: f64, segments: SegmentSet, mirror: Option<f64>) -> WeightChange {
        WeightChange {
            stage: 2,
            weight: Weight::new(weight).unwrap(),
            previous: Weight::ZERO,
            segments,
            mirror: mirror.map(|m| Weight::new(m).unwrap()),
        }
    }

    fn api() -> Placement {
        Placement {
            location: Enclosing::Prefix("/api/".into()),
            scheme: "http".into(),
        }
    }

    #[test]
    fn a_stage_with_segments_and_a_mirror_routes_both_from_the_location() {
        let defined = segments();
        let at = change(0.0, SegmentSet::EMPTY.with(0).with(1), Some(12.5));
        let routing = Routing::of(at, &defined);
        assert_eq!(routing.summary(), "segments beta, ios-users; mirror 12.5%");
        let marker = location_marker(at, &routing, "t0k3n");
        let text = render(&with_location(), "shop", &routing, &marker, Some(&api()));
        assert_eq!(
            text,
            "# Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.\n\
             # Stage 2 location: segments beta, ios-users; mirror 12.5%. Write t0k3n.\n\
             # Requests in a segment go to the new version's servers alone.\n\
             if ($rollout_app_segment) {\n    proxy_pass http://app_rollout_canary;\n}\n\
             # A copy of 12.5% of the GET and HEAD requests also goes to the new version; nginx\n\
             # discards its answers, and clients get the stable version's.\n\
             mirror /api/_rollout_app_mirror;\n\
             mirror_request_body off;\n\
             location = /api/_rollout_app_mirror {\n    internal;\n    if ($rollout_app_mirror = \"\") {\n        return 204;\n    }\n    proxy_pass http://app_rollout_canary$request_uri;\n    proxy_connect_timeout 1s;\n    proxy_send_timeout 1s;\n    proxy_read_timeout 1s;\n}\n"
        );
        let definitions = definitions(&with_location(), &routing);
        assert_eq!(
            definitions,
            "\n# What the location file uses: the new version's servers alone, and which requests\n\
             # are in a segment or mirrored.\n\
             upstream app_rollout_canary {\n    server 127.0.0.1:9002;\n    server 127.0.0.1:9003;\n    keepalive 32;\n}\n\
             map $http_x_beta $rollout_app_segment_beta { \"\" \"\"; default 1; }\n\
             map $http_cookie $rollout_app_segment_ios_users { \"~(^|;[ ]*)platform\\\\.id=ios\\\\ \\\\\\\"17\\\\\\\"(;|$)\" 1; default \"\"; }\n\
             map \"$rollout_app_segment_beta$rollout_app_segment_ios_users\" $rollout_app_segment { \"\" \"\"; default 1; }\n\
             map $request_method $rollout_app_mirror_method { GET 1; HEAD 1; default \"\"; }\n\
             split_clients \"${request_id}\" $rollout_app_mirror_sample { 12.5% 1; * \"\"; }\n\
             # Requests in a segment already go to the new version: they are not copied.\n\
             map \"$rollout_app_segment:$rollout_app_mirror_method:$rollout_app_mirror_sample\" $rollout_app_mirror { \":1:1\" 1; default \"\"; }\n"
        );
    }

    #[test]
    fn the_mirror_timeout_is_written_as_nginx_reads_it() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(nginx_time(ms(1000)), "1s");
        assert_eq!(nginx_time(ms(250)), "250ms");
        assert_eq!(nginx_time(ms(1500)), "1500ms");
        let mut spec = with_location();
        spec.mirror_timeout = ms(250);
        let defined = segments();
        let routing = Routing::of(change(0.0, SegmentSet::EMPTY, Some(5.0)), &defined);
        let text = render(&spec, "shop", &routing, "# m", Some(&api()));
        assert!(text.contains("    proxy_read_timeout 250ms;\n"), "{text}");
    }

    #[test]
    fn everyone_on_the_new_version_is_plain_proxying() {
        let defined = segments();
        let routing = Routing::of(change(100.0, SegmentSet::EMPTY.with(0), None), &defined);
        assert_eq!(routing.summary(), "plain proxying");
        let text = render(&with_location(), "shop", &routing, "# marker", Some(&api()));
        assert_eq!(
            text,
            "# Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.\n# marker\n"
        );
        assert!(definitions(&with_location(), &routing).ends_with(
            "map \"\" $rollout_app_segment { default \"\"; }\nmap \"\" $rollout_app_mirror { default \"\"; }\n"
        ));
    }

    /// The pair is replaced one file after the other: every upstream file rollout writes must
    /// pass `nginx -t` with every location file it writes, inside a prefix location.
    #[test]
    fn nginx_accepts_every_upstream_file_with_every_location_file() {
        let nginx = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let mut spec = with_location();
        spec.location_file = Some(dir.path().join("location.inc"));
        spec.mirror_methods = vec!["GET".into(), "POST".into()];
        // nginx reads milliseconds as written here.
        spec.mirror_timeout = std::time::Duration::from_millis(250);
        let defined = segments();
        let all = SegmentSet::EMPTY.with(0).with(1).with(2);
        let changes = [
            change(0.0, SegmentSet::EMPTY, None),
            change(0.0, all, None),
            change(0.0, SegmentSet::EMPTY, Some(0.01)),
            change(10.0, all, Some(100.0)),
            change(100.0, all, None),
        ];
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
                 http {{\n    include {d}/upstream.conf;\n    server {{\n        listen 127.0.0.1:1;\n\
                 \x20       location /api/ {{\n            include {d}/location.inc;\n            proxy_pass http://app;\n        }}\n    }}\n}}\n"
            ),
        )
        .unwrap();
        for up in changes {
            for loc in changes {
                let upstream = upstream_file(&spec, "p", up, &marker(up, "x"), &defined).unwrap();
                let routing = Routing::of(loc, &defined);
                let location = render(&spec, "p", &routing, "# m", Some(&api()));
                std::fs::write(dir.path().join("upstream.conf"), &upstream).unwrap();
                std::fs::write(dir.path().join("location.inc"), &location).unwrap();
                let output = nginx_test(&nginx, dir.path());
                assert!(
                    output.status.success(),
                    "nginx -t refused\n{upstream}\n{location}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}
