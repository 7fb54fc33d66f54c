//! The `[backend]` table: which fields each backend type and mode takes, and their checks.

use std::path::PathBuf;
use std::time::Duration;

use super::diagnostic::{Diagnostic, Span};
use super::flags::{FLAGD_STEPS_PER_PERCENT, UNLEASH_STEPS_PER_PERCENT};
use super::model::*;
use super::raw::{RawBackend, RawStage};
use super::reader::{At, Cx, Table, join};

const TYPES: [&str; 6] = ["nginx", "kubectl", "ecs", "command", "flagd", "unleash"];

/// A backend type, and the mode when the field belongs to one mode only.
type Owner = (&'static str, Option<&'static str>);

/// Every backend field, with the backend types (and modes) it belongs to, so that a field
/// given for the wrong type or mode is reported as such rather than as unknown.
const FIELD_OWNERS: &[(&str, &[Owner])] = &[
    ("upstream_file", &[("nginx", None)]),
    ("upstream", &[("nginx", None)]),
    ("stable", &[("nginx", None)]),
    ("canary", &[("nginx", None)]),
    ("test_command", &[("nginx", None)]),
    ("reload_command", &[("nginx", None)]),
    ("verify_command", &[("nginx", None)]),
    ("pid_file", &[("nginx", None)]),
    ("extra", &[("nginx", None)]),
    ("command_timeout", &[("nginx", None)]),
    ("location_file", &[("nginx", None)]),
    ("mirror_timeout", &[("nginx", None)]),
    (
        "mirror_methods",
        &[("nginx", None), ("kubectl", Some("gateway"))],
    ),
    ("kubectl", &[("kubectl", None)]),
    ("kubeconfig", &[("kubectl", None)]),
    ("context", &[("kubectl", None)]),
    ("namespace", &[("kubectl", None)]),
    ("rollout_timeout", &[("kubectl", None)]),
    ("stable_deployment", &[("kubectl", Some("replicas"))]),
    ("canary_deployment", &[("kubectl", Some("replicas"))]),
    ("replicas", &[("kubectl", Some("replicas"))]),
    ("route", &[("kubectl", Some("gateway"))]),
    ("stable_service", &[("kubectl", Some("gateway"))]),
    (
        "canary_service",
        &[("kubectl", Some("gateway")), ("ecs", Some("alb"))],
    ),
    ("container", &[("kubectl", Some("replicas")), ("ecs", None)]),
    ("image", &[("kubectl", Some("replicas")), ("ecs", None)]),
    ("mode", &[("kubectl", None), ("ecs", None)]),
    ("cluster", &[("ecs", None)]),
    ("region", &[("ecs", None)]),
    ("endpoint_url", &[("ecs", None)]),
    ("deploy_timeout", &[("ecs", None)]),
    ("service", &[("ecs", Some("service"))]),
    ("listener_arn", &[("ecs", Some("alb"))]),
    ("rule_arn", &[("ecs", Some("alb"))]),
    ("stable_target_group", &[("ecs", Some("alb"))]),
    ("canary_target_group", &[("ecs", Some("alb"))]),
    ("set_weight", &[("command", None)]),
    ("promote", &[("command", None)]),
    ("rollback", &[("command", None)]),
    ("verify", &[("command", None)]),
    ("timeout", &[("command", None), ("unleash", None)]),
    ("flags_file", &[("flagd", None)]),
    ("flag", &[("flagd", None), ("unleash", None)]),
    ("on_variant", &[("flagd", None)]),
    ("off_variant", &[("flagd", None)]),
    ("cleanup_after", &[("flagd", None), ("unleash", None)]),
    ("url", &[("unleash", None)]),
    ("token", &[("unleash", None)]),
    ("project", &[("unleash", None)]),
    ("environment", &[("unleash", None)]),
    ("stickiness", &[("unleash", None)]),
    (
        "segments",
        &[
            ("flagd", None),
            ("unleash", None),
            ("nginx", None),
            ("kubectl", Some("gateway")),
        ],
    ),
];

/// Why `key` is not valid in a backend of type `kind` (and `mode`), naming where it belongs.
fn misplaced(key: &str, kind: &str, mode: Option<&str>) -> Option<String> {
    let (_, owners) = FIELD_OWNERS.iter().find(|(field, _)| *field == key)?;
    let describe = |(t, m): &Owner| match m {
        Some(m) => format!("the {t} backend with mode = \"{m}\""),
        None => format!("the {t} backend"),
    };
    let here = match mode {
        Some(m) => format!("the {kind} backend with mode = \"{m}\""),
        None => format!("the {kind} backend"),
    };
    let there: Vec<String> = owners.iter().map(describe).collect();
    Some(format!(
        "`{key}` belongs to {}, not to {here}",
        there.join(" or ")
    ))
}

pub fn read_backend(table: &Table<'_, '_>) -> RawBackend {
    let kind = table
        .required("type", "type = \"nginx\"")
        .and_then(|f| f.get().choice(&TYPES.map(|t| (t, t))));
    let spec = match kind {
        Some("nginx") => nginx(table).map(Backend::Nginx),
        Some("kubectl") => kubectl(table).map(Backend::Kubectl),
        Some("ecs") => ecs(table).map(Backend::Ecs),
        Some("flagd") => super::flags::flagd(table).map(Backend::Flagd),
        Some("unleash") => super::flags::unleash(table).map(Backend::Unleash),
        Some(_) => command(table).map(Backend::Command),
        None => None,
    };
    let segments = segment_family(kind, table.peek_str("mode"))
        .map_or_else(Vec::new, |family| super::segments::read(table, family));
    if kind == Some("nginx") {
        super::mirror::check_nginx_segment_headers(table);
    }
    if kind == Some("kubectl") && table.peek_str("mode") == Some("gateway") {
        super::mirror::warn_gateway_regex_segments(table);
    }
    if let Some(kind) = kind {
        let mode = table
            .peek_str("mode")
            .filter(|_| matches!(kind, "kubectl" | "ecs"));
        table.finish(|key| misplaced(key, kind, mode));
    }
    RawBackend {
        header: table.span(),
        spec,
        segments,
    }
}

/// What a backend's segments match on; `None` for backends that have none (their
/// `segments` field is then reported as misplaced).
fn segment_family(kind: Option<&str>, mode: Option<&str>) -> Option<super::segments::Family> {
    use super::segments::Family;
    match (kind?, mode) {
        ("flagd" | "unleash", _) => Some(Family::Attribute),
        ("nginx", _) | ("kubectl", Some("gateway")) => Some(Family::Request),
        _ => None,
    }
}

fn string(table: &Table<'_, '_>, key: &'static str, example: &str) -> Option<String> {
    table
        .required(key, example)
        .and_then(|f| f.get().str().map(str::to_string))
        .and_then(|s| non_empty(table, key, s))
}

fn non_empty(table: &Table<'_, '_>, key: &'static str, value: String) -> Option<String> {
    if !value.trim().is_empty() {
        return Some(value);
    }
    if let Some(f) = table.field(key) {
        table.push(f.get().error("must not be empty").label("empty"));
    }
    None
}

fn optional_string(table: &Table<'_, '_>, key: &'static str) -> Option<String> {
    table
        .field(key)
        .and_then(|f| f.get().str().map(str::to_string))
}

fn argv(table: &Table<'_, '_>, key: &'static str) -> Option<Argv> {
    table
        .field(key)
        .and_then(|f| f.get().argv())
        .and_then(Argv::new)
}

fn required_argv(table: &Table<'_, '_>, key: &'static str, example: &str) -> Option<Argv> {
    table
        .required(key, example)
        .and_then(|f| f.get().argv())
        .and_then(Argv::new)
}

fn duration(table: &Table<'_, '_>, key: &'static str, default: Duration) -> Duration {
    table
        .field(key)
        .and_then(|f| f.get().positive_duration())
        .unwrap_or(default)
}

/// Fails (returns None) if any part failed, so a half-read backend never reaches the model.
macro_rules! all_or_none {
    ($($name:ident),+ $(,)?) => {
        let ($(Some($name),)+) = ($($name,)+) else { return None; };
    };
}

fn nginx(table: &Table<'_, '_>) -> Option<NginxBackend> {
    let upstream_file = string(
        table,
        "upstream_file",
        "upstream_file = \"/etc/nginx/conf.d/app-upstream.conf\"",
    )
    .map(PathBuf::from);
    let upstream = string(table, "upstream", "upstream = \"app\"").and_then(|u| {
        if u.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Some(u);
        }
        table.push(
            table
                .field("upstream")?
                .get()
                .error(format!("`{u}` is not a usable nginx upstream name"))
                .label("invalid name")
                .help("use letters, digits, `-`, `_` and `.`, as in the `proxy_pass http://NAME;` line"),
        );
        None
    });
    let stable = servers(table, "stable");
    let canary = servers(table, "canary");
    let extra = table.field("extra").map_or(Some(Vec::new()), |f| {
        let lines = f.get().strings("extra = [\"keepalive 32;\"]")?;
        let mut ok = true;
        for line in &lines {
            let text = line.value.trim();
            if !text.ends_with(';') || text.contains(['{', '}', '\n']) {
                ok = false;
                table.push(
                    Diagnostic::error(
                        &f.path,
                        line.span.clone(),
                        "is not a single nginx directive",
                    )
                    .label("expected one directive ending in `;`")
                    .help(
                        "each entry is one line inside the upstream block, e.g. \"keepalive 32;\"",
                    ),
                );
            }
        }
        ok.then(|| {
            lines
                .into_iter()
                .map(|l| l.value.trim().to_string())
                .collect()
        })
    });
    let test_command = table.field("test_command").map_or_else(
        || Argv::new(vec!["nginx".into(), "-t".into()]),
        |f| f.get().argv().and_then(Argv::new),
    );
    let reload_command = table.field("reload_command").map_or_else(
        || Argv::new(vec!["nginx".into(), "-s".into(), "reload".into()]),
        |f| f.get().argv().and_then(Argv::new),
    );
    let verify_command = table
        .field("verify_command")
        .map(|f| f.get().argv().and_then(Argv::new));
    let verify_ok = !matches!(verify_command, Some(None));
    let pid_file = optional_string(table, "pid_file").map(PathBuf::from);
    if pid_file.is_none() && verify_command.is_none() {
        table.push(
            Diagnostic::warning(table.path(), table.span(), "nginx reloads will not be confirmed")
                .label("no `pid_file` and no `verify_command`")
                .help("`nginx -s reload` exits 0 even when nginx then fails to apply the file; set pid_file = \"/run/nginx.pid\" (rollout then waits for new worker processes) or a verify_command"),
        );
    }
    let command_timeout = duration(table, "command_timeout", Duration::from_secs(30));
    let location_file = super::mirror::read_location_file(table, upstream_file.as_deref());
    let mirror_methods = super::mirror::read_methods(table);
    let mirror_timeout = super::mirror::read_timeout(table);
    all_or_none!(
        upstream_file,
        upstream,
        stable,
        canary,
        extra,
        test_command,
        reload_command,
        location_file,
        mirror_methods,
        mirror_timeout
    );
    if let Some(overlap) = stable.iter().find(|s| canary.contains(s)) {
        table.push(
            table
                .field("canary")?
                .get()
                .error(format!(
                    "`{overlap}` is listed in both `stable` and `canary`"
                ))
                .label("also a stable server")
                .help("the stable and canary groups must be different servers"),
        );
        return None;
    }
    let spec = NginxBackend {
        upstream_file,
        upstream,
        stable,
        canary,
        test_command,
        reload_command,
        verify_command: verify_command.flatten(),
        pid_file,
        extra,
        command_timeout,
        location_file,
        mirror_methods,
        mirror_timeout,
    };
    if let (None, Some(f)) = (spec.dump_command(), table.field("test_command")) {
        table.push(
            Diagnostic::warning(f.path(), f.span(), "rollout cannot check that nginx loads the upstream file")
                .label("not an `nginx ... -t` command")
                .help("rollout runs test_command with -T in place of -t to read nginx's configuration and confirm, after every reload, that it includes this write of upstream_file; it cannot for a wrapper, so only pid_file or verify_command confirm reloads. Run nginx with -t directly, or behind a prefix such as sudo or docker exec NAME"),
        );
    }
    verify_ok.then_some(spec)
}

/// A non-empty list of `host:port` servers.
fn servers(table: &Table<'_, '_>, key: &'static str) -> Option<Vec<String>> {
    let f = table.required(key, &format!("{key} = [\"127.0.0.1:8080\"]"))?;
    let items = f.get().strings("[\"10.0.0.1:8080\", \"10.0.0.2:8080\"]")?;
    if items.is_empty() {
        table.push(
            f.get()
                .error(format!("the {key} group has no servers"))
                .label("empty")
                .help("list at least one server as \"host:port\""),
        );
        return None;
    }
    let mut ok = true;
    for item in &items {
        if !is_host_port(&item.value) {
            ok = false;
            table.push(
                Diagnostic::error(
                    &f.path,
                    item.span.clone(),
                    format!("`{}` is not host:port", item.value),
                )
                .label("expected host:port")
                .help("for example: \"10.0.0.1:8080\" or \"[::1]:8080\""),
            );
        }
    }
    ok.then(|| items.into_iter().map(|i| i.value).collect())
}

fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:_".contains(c));
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn mode<'m>(table: &Table<'_, '_>, modes: &[&'m str]) -> Option<&'m str> {
    let example = format!("mode = \"{}\"", modes[0]);
    table.required("mode", &example).and_then(|f| {
        f.get()
            .choice(&modes.iter().map(|m| (*m, *m)).collect::<Vec<_>>())
    })
}

fn kubectl(table: &Table<'_, '_>) -> Option<KubectlBackend> {
    let namespace = string(table, "namespace", "namespace = \"default\"");
    let mode = match mode(table, &["replicas", "gateway"]) {
        Some("replicas") => replicas(table),
        Some(_) => gateway(table),
        None => None,
    };
    let kubectl = optional_string(table, "kubectl").unwrap_or_else(|| "kubectl".to_string());
    let kubeconfig = optional_string(table, "kubeconfig").map(PathBuf::from);
    let context = optional_string(table, "context");
    let rollout_timeout = duration(table, "rollout_timeout", Duration::from_secs(300));
    all_or_none!(namespace, mode);
    Some(KubectlBackend {
        connection: KubectlConnection {
            kubectl,
            kubeconfig,
            context,
            namespace,
        },
        rollout_timeout,
        mode,
    })
}

fn replicas(table: &Table<'_, '_>) -> Option<KubectlMode> {
    let stable_deployment = string(table, "stable_deployment", "stable_deployment = \"app\"");
    let canary_deployment = string(
        table,
        "canary_deployment",
        "canary_deployment = \"app-canary\"",
    );
    let replicas = table
        .required("replicas", "replicas = 10")
        .and_then(|f| f.get().count(1, "replicas = 10"));
    let container = string(table, "container", "container = \"app\"");
    let image = string(table, "image", "image = \"registry.example.com/app:2.3.0\"");
    all_or_none!(
        stable_deployment,
        canary_deployment,
        replicas,
        container,
        image
    );
    Some(KubectlMode::Replicas(ReplicasSpec {
        stable_deployment,
        canary_deployment,
        replicas,
        container,
        image,
    }))
}

fn gateway(table: &Table<'_, '_>) -> Option<KubectlMode> {
    let route = string(table, "route", "route = \"app\"");
    let stable_service = string(table, "stable_service", "stable_service = \"app-stable\"");
    let canary_service = string(table, "canary_service", "canary_service = \"app-canary\"");
    let mirror_methods = super::mirror::read_methods(table);
    all_or_none!(route, stable_service, canary_service, mirror_methods);
    Some(KubectlMode::Gateway(GatewaySpec {
        route,
        stable_service,
        canary_service,
        mirror_methods,
    }))
}

fn ecs(table: &Table<'_, '_>) -> Option<EcsBackend> {
    let cluster = string(table, "cluster", "cluster = \"prod\"");
    let mode = match mode(table, &["service", "alb"]) {
        Some("service") => ecs_service(table),
        Some(_) => alb(table),
        None => None,
    };
    let region = optional_string(table, "region");
    let endpoint_url = table.field("endpoint_url").and_then(|f| {
        let f = f.get();
        let url = f.str()?;
        if url.starts_with("http://") || url.starts_with("https://") {
            return Some(url.to_string());
        }
        table.push(
            f.error("is not an http:// or https:// URL")
                .label("expected a URL"),
        );
        None
    });
    let deploy_timeout = duration(table, "deploy_timeout", Duration::from_secs(600));
    all_or_none!(cluster, mode);
    Some(EcsBackend {
        aws: EcsAws {
            cluster,
            region,
            endpoint_url,
            deploy_timeout,
        },
        mode,
    })
}

fn ecs_service(table: &Table<'_, '_>) -> Option<EcsMode> {
    let service = string(table, "service", "service = \"checkout\"");
    let container = string(table, "container", "container = \"app\"");
    let image = string(
        table,
        "image",
        "image = \"123456789012.dkr.ecr.us-east-1.amazonaws.com/app:2.3.0\"",
    );
    all_or_none!(service, container, image);
    Some(EcsMode::Service(EcsServiceSpec {
        update: EcsImageUpdate {
            service,
            container,
            image,
        },
    }))
}

fn alb(table: &Table<'_, '_>) -> Option<EcsMode> {
    let listener = optional_string(table, "listener_arn").map(AlbListener::Listener);
    let rule = optional_string(table, "rule_arn").map(AlbListener::Rule);
    let listener = match (listener, rule) {
        (Some(l), None) | (None, Some(l)) => Some(l),
        (Some(_), Some(_)) => {
            table.push(
                table
                    .field("rule_arn")?
                    .get()
                    .error("give either `listener_arn` or `rule_arn`, not both")
                    .label("second target")
                    .help("use `rule_arn` when the canary split lives on a listener rule, `listener_arn` for the default action"),
            );
            None
        }
        (None, None) => {
            table.push(
                Diagnostic::error(
                    table.path(),
                    table.span(),
                    "missing field `listener_arn` or `rule_arn`",
                )
                .label("the alb mode needs the listener or rule that forwards to the target groups")
                .help("add listener_arn = \"arn:aws:elasticloadbalancing:...\""),
            );
            None
        }
    };
    let stable_target_group = string(
        table,
        "stable_target_group",
        "stable_target_group = \"arn:aws:elasticloadbalancing:...\"",
    );
    let canary_target_group = string(
        table,
        "canary_target_group",
        "canary_target_group = \"arn:aws:elasticloadbalancing:...\"",
    );
    let canary_update = canary_update(table)?;
    all_or_none!(listener, stable_target_group, canary_target_group);
    Some(EcsMode::Alb(EcsAlbSpec {
        listener,
        stable_target_group,
        canary_target_group,
        canary_update,
    }))
}

/// `canary_service`, `container` and `image` go together: all three or none.
/// The outer Option is None on error; the inner is whether they were given.
fn canary_update(table: &Table<'_, '_>) -> Option<Option<EcsImageUpdate>> {
    let keys = ["canary_service", "container", "image"];
    let given: Vec<Option<String>> = keys.iter().map(|k| optional_string(table, k)).collect();
    match given.as_slice() {
        [Some(service), Some(container), Some(image)] => Some(Some(EcsImageUpdate {
            service: service.clone(),
            container: container.clone(),
            image: image.clone(),
        })),
        [None, None, None] => Some(None),
        _ => {
            let missing: Vec<String> = keys
                .iter()
                .zip(&given)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| format!("`{k}`"))
                .collect();
            table.push(
                Diagnostic::error(table.path(), table.span(), format!("missing {}", missing.join(" and ")))
                    .label("the canary image update needs `canary_service`, `container` and `image` together")
                    .help("give all three to update the canary service's image first, or none"),
            );
            None
        }
    }
}

fn command(table: &Table<'_, '_>) -> Option<CommandBackend> {
    let set_weight = required_argv(
        table,
        "set_weight",
        "set_weight = [\"./scripts/set-weight.sh\"]",
    );
    let promote = table.field("promote").map(|_| argv(table, "promote"));
    let rollback = table.field("rollback").map(|_| argv(table, "rollback"));
    let verify = table.field("verify").map(|_| argv(table, "verify"));
    let timeout = duration(table, "timeout", Duration::from_secs(60));
    all_or_none!(set_weight);
    // Each optional command is `Some(None)` when given but invalid: fail the backend then.
    let bad = [&promote, &rollback, &verify]
        .iter()
        .any(|c| matches!(c, Some(None)));
    (!bad).then(|| CommandBackend {
        set_weight,
        promote: promote.flatten(),
        rollback: rollback.flatten(),
        verify: verify.flatten(),
        timeout,
    })
}

/// Backends that cannot split traffic finely restrict the weights a plan may use.
pub fn check_backend_weights(
    cx: &Cx,
    backend: &Backend,
    header: &Span,
    stages: &[Stage],
    raw: Option<&At<Vec<RawStage>>>,
) {
    let Some(raw) = raw else { return };
    for (stage, raw_stage) in stages.iter().zip(&raw.value) {
        let span = raw_stage
            .weight
            .as_ref()
            .map_or(header.clone(), |w| w.span.clone());
        let path = join(&raw_stage.path, "weight");
        match backend {
            Backend::Ecs(EcsBackend {
                mode: EcsMode::Service(_),
                ..
            }) if !stage.weight.is_zero() && !stage.weight.is_full() => cx.push(
                Diagnostic::error(path, span, format!("the ecs backend in mode = \"service\" cannot send {} of traffic", stage.weight))
                    .label("only 0 or 100 here")
                    .help("mode = \"service\" replaces the whole service at once; use mode = \"alb\" with two target groups for gradual weights"),
            ),
            Backend::Nginx(_) => check_step(cx, stage, (path, span), "nginx", NGINX_STEPS_PER_PERCENT),
            // HTTPRoute weights are written as shares of 100,000 at most.
            Backend::Kubectl(KubectlBackend {
                mode: KubectlMode::Gateway(_),
                ..
            }) => check_step(cx, stage, (path, span), "kubectl gateway", 1000),
            // ALB takes 0..=999 per target group: tenths of a percent are exact (999 to 1).
            Backend::Ecs(EcsBackend {
                mode: EcsMode::Alb(_),
                ..
            }) => check_step(cx, stage, (path, span), "ECS ALB", 10),
            Backend::Flagd(_) => super::flags::check_step(cx, stage, path, span, "flagd", FLAGD_STEPS_PER_PERCENT),
            Backend::Unleash(_) => super::flags::check_step(cx, stage, path, span, "unleash", UNLEASH_STEPS_PER_PERCENT),
            _ => {}
        }
    }
    super::mirror::check(cx, backend, stages, &raw.value);
}

/// A backend would round a finer weight to a neighbouring split (nginx: 0.0004% to no canary
/// server at all) while every event still said 0.0004%.
fn check_step(
    cx: &Cx,
    stage: &Stage,
    place: (String, Span),
    backend: &str,
    steps_per_percent: u64,
) {
    if stage.weight.in_steps(steps_per_percent).is_some() {
        return;
    }
    let (path, span) = place;
    let steps = steps_per_percent as f64;
    let scaled = stage.weight.percent() * steps;
    let (below, above) = (scaled.floor() / steps, scaled.ceil() / steps);
    let step = 1.0 / steps;
    cx.push(
        Diagnostic::error(
            path,
            span,
            format!(
                "stage {}'s weight {} is finer than the {backend} backend can split traffic",
                stage.number, stage.weight
            ),
        )
        .label(format!("not a multiple of {step}%"))
        .help(format!(
            "{backend} weights here move traffic in steps of {step}%; use {below} or {above}"
        )),
    );
}
