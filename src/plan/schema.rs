//! `rollout schema`: a JSON Schema (draft-07) of the plan format, for editors. Taplo and its
//! editor extensions read it from a `#:schema ./rollout.schema.json` comment at the top of a
//! plan. The parser stays the authority (it checks what a schema cannot: weights in order,
//! conditions, references); a test holds the two to the same field names, table by table.

use serde_json::{Map, Value, json};

use super::model::HookEvent;
use super::notify::NotifyOn;

const DURATION: &str = r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$";
const NAME: &str = "^[a-z0-9][a-z0-9-]*$";

/// The whole schema.
pub fn schema() -> Value {
    let mut root = table(
        "A rollout plan: the stages of traffic weight, how long each bakes, and the metrics that decide.",
        &["name", "backend", "stages"],
        vec![
            (
                "name",
                string_with(
                    "Identifies the rollout's state and lock.",
                    json!({"pattern": NAME}),
                ),
            ),
            ("description", string("Shown with the plan and in reports.")),
            (
                "strategy",
                choice(
                    "`canary` (default) or `blue-green`.",
                    &["canary", "blue-green"],
                ),
            ),
            ("defaults", defaults()),
            ("state", state()),
            ("backend", backend()),
            (
                "sources",
                json!({
                    "description": "Metric sources, by name: [sources.NAME].",
                    "type": "object",
                    "propertyNames": {"pattern": NAME},
                    "additionalProperties": source(),
                }),
            ),
            (
                "metrics",
                array(
                    "The metrics that gate advancing and trigger rollback.",
                    metric(),
                ),
            ),
            (
                "stages",
                json!({
                    "description": "The stages, in order: weights never decrease; a canary ends at 100.",
                    "type": "array",
                    "minItems": 1,
                    "items": stage(),
                }),
            ),
            (
                "hooks",
                array("Commands run at plan-level moments.", plan_hook()),
            ),
            (
                "notify",
                array("Who is told what, in the background.", notify()),
            ),
            ("window", window()),
        ],
    );
    let root = root.as_object_mut().expect("an object");
    root.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root.insert("title".into(), json!("rollout plan"));
    root.insert(
        "definitions".into(),
        json!({
            "duration": {"type": "string", "pattern": DURATION, "description": "A duration: \"500ms\", \"30s\", \"5m\", \"1h 30m\"."},
            "argv": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "A command as an argv array: the program, then its arguments; never run by a shell."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "HTTP headers; values are secrets and may use ${VAR}."},
            "halt": {"enum": ["rollback", "pause"]},
        }),
    );
    Value::Object(root.clone())
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn string_with(description: &str, extra: Value) -> Value {
    let mut s = string(description);
    merge(&mut s, extra);
    s
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

fn duration(description: &str) -> Value {
    json!({"$ref": "#/definitions/duration", "description": description})
}

fn argv(description: &str) -> Value {
    json!({"$ref": "#/definitions/argv", "description": description})
}

fn choice(description: &str, values: &[&str]) -> Value {
    json!({"enum": values, "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn array(description: &str, items: Value) -> Value {
    json!({"type": "array", "description": description, "items": items})
}

fn strings(description: &str) -> Value {
    array(description, json!({"type": "string"}))
}

/// A table that allows only `fields`.
fn table(description: &str, required: &[&str], fields: Vec<(&str, Value)>) -> Value {
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    json!({
        "description": description,
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

/// `field = "value"` that selects a branch.
fn tag(value: &str) -> Value {
    json!({"const": value})
}

fn defaults() -> Value {
    table(
        "Defaults for every stage.",
        &[],
        vec![
            (
                "interval",
                duration("Metric poll interval (default 30s, at least 100ms)."),
            ),
            (
                "bake",
                duration("How long each stage holds before it may advance (default 5m)."),
            ),
            (
                "max_hold",
                duration(
                    "How long a stage may wait for passing evidence after its bake (default 30m).",
                ),
            ),
            (
                "on_timeout",
                json!({"$ref": "#/definitions/halt", "description": "What happens when max_hold runs out (default rollback)."}),
            ),
            (
                "on_interrupt",
                json!({"$ref": "#/definitions/halt", "description": "What SIGINT/SIGTERM does (default rollback)."}),
            ),
            (
                "approval",
                boolean("Whether every stage needs an approval (default false)."),
            ),
            (
                "hook_timeout",
                duration("The time limit of hooks without their own (default 5m)."),
            ),
            (
                "stuck_after",
                duration(
                    "A stage that has not advanced this long into its bake emits `stuck`, once.",
                ),
            ),
        ],
    )
}

fn state() -> Value {
    table(
        "Where the rollout's state lives, unless --state or the environment says.",
        &[],
        vec![
            (
                "url",
                string(
                    "A folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX.",
                ),
            ),
            (
                "lease",
                duration(
                    "How long a shared store's lease lasts without renewal (default 30s, at least 3s).",
                ),
            ),
        ],
    )
}

fn backend() -> Value {
    let nginx = vec![
        ("type", tag("nginx")),
        (
            "upstream_file",
            string("The file rollout owns and rewrites atomically."),
        ),
        ("upstream", string("The upstream block's name.")),
        ("stable", strings("The stable servers, host:port.")),
        ("canary", strings("The new version's servers, host:port.")),
        (
            "extra",
            strings("Lines kept inside the upstream block, e.g. \"keepalive 32;\"."),
        ),
        (
            "test_command",
            argv("Checks the configuration (default [\"nginx\", \"-t\"])."),
        ),
        (
            "reload_command",
            argv("Reloads nginx (default [\"nginx\", \"-s\", \"reload\"])."),
        ),
        ("verify_command", argv("Confirms a reload took effect.")),
        (
            "pid_file",
            string("nginx's pid file: a reload is confirmed by new workers."),
        ),
        (
            "command_timeout",
            duration("The limit for each nginx command (default 30s)."),
        ),
        (
            "location_file",
            string(
                "The second file rollout owns, included inside the location that proxies to the upstream: mirroring and segment routing.",
            ),
        ),
        ("mirror_methods", mirror_methods()),
        (
            "mirror_timeout",
            duration(
                "How long a mirrored copy may take to connect, send and be answered (default 1s); a kept-alive client waits for it.",
            ),
        ),
        ("segments", segments(request_segment())),
    ];
    let kubectl = |mode: &str, more: Vec<(&'static str, Value)>| {
        let mut fields = vec![
            ("type", tag("kubectl")),
            ("mode", tag(mode)),
            ("namespace", string("The namespace.")),
            (
                "kubectl",
                string("The kubectl program (default \"kubectl\")."),
            ),
            ("kubeconfig", string("A kubeconfig file.")),
            ("context", string("A kubeconfig context.")),
            (
                "rollout_timeout",
                duration("How long Deployments may take to roll out (default 5m)."),
            ),
        ];
        fields.extend(more);
        fields
    };
    let replicas = kubectl(
        "replicas",
        vec![
            ("stable_deployment", string("The stable Deployment.")),
            ("canary_deployment", string("The canary Deployment.")),
            (
                "replicas",
                json!({"type": "integer", "minimum": 1, "description": "Replicas in total, split by weight."}),
            ),
            (
                "container",
                string("The container that gets the new image."),
            ),
            ("image", string("The new image.")),
        ],
    );
    let gateway = kubectl(
        "gateway",
        vec![
            (
                "route",
                string("The HTTPRoute whose backendRefs get the weights."),
            ),
            ("stable_service", string("The stable Service.")),
            ("canary_service", string("The canary Service.")),
            ("mirror_methods", mirror_methods()),
            ("segments", segments(request_segment())),
        ],
    );
    let ecs = |mode: &str, more: Vec<(&'static str, Value)>| {
        let mut fields = vec![
            ("type", tag("ecs")),
            ("mode", tag(mode)),
            ("cluster", string("The ECS cluster.")),
            ("region", string("The AWS region.")),
            (
                "endpoint_url",
                string("Another endpoint for the AWS APIs (for testing)."),
            ),
            (
                "deploy_timeout",
                duration("How long a deployment may take to be steady (default 10m)."),
            ),
            (
                "container",
                string("The container that gets the new image."),
            ),
            ("image", string("The new image.")),
        ];
        fields.extend(more);
        fields
    };
    let service = ecs("service", vec![("service", string("The ECS service."))]);
    let alb = ecs(
        "alb",
        vec![
            (
                "listener_arn",
                string("The listener whose default action forwards to both target groups."),
            ),
            (
                "rule_arn",
                string("The listener rule that forwards to both target groups."),
            ),
            (
                "stable_target_group",
                string("The stable target group's ARN."),
            ),
            (
                "canary_target_group",
                string("The canary target group's ARN."),
            ),
            (
                "canary_service",
                string("The canary ECS service, which gets the new image first."),
            ),
        ],
    );
    let command = vec![
        ("type", tag("command")),
        (
            "set_weight",
            argv("Moves ROLLOUT_WEIGHT percent of traffic to the new version."),
        ),
        ("promote", argv("Runs once after the last stage passed.")),
        ("rollback", argv("Returns all traffic to stable.")),
        (
            "verify",
            argv("Runs after every set_weight; non-zero means the change did not take."),
        ),
        (
            "timeout",
            duration("The limit for each backend command (default 60s)."),
        ),
    ];
    let flag_fields = |kind: &str, mut more: Vec<(&'static str, Value)>| {
        more.insert(0, ("type", tag(kind)));
        more.extend([
            ("flag", string("The flag's key; it must exist.")),
            (
                "cleanup_after",
                duration("How long after promotion validate starts reminding that the flag should be deleted (default 30days)."),
            ),
            ("segments", segments(attribute_segment())),
        ]);
        more
    };
    let flagd = flag_fields(
        "flagd",
        vec![
            (
                "flags_file",
                string("The flagd flag-definition file rollout rewrites (only its own flag)."),
            ),
            ("on_variant", string("The new variant (default \"on\").")),
            (
                "off_variant",
                string("The variant everyone gets on rollback (default \"off\")."),
            ),
        ],
    );
    let unleash = flag_fields(
        "unleash",
        vec![
            ("url", string("The Unleash server; ${VAR} allowed.")),
            (
                "token",
                string("An admin API token, a secret: \"${UNLEASH_TOKEN}\"."),
            ),
            ("project", string("The project (default \"default\").")),
            (
                "environment",
                string("The environment whose strategies rollout owns."),
            ),
            (
                "stickiness",
                string("The gradual rollout's stickiness (default \"default\")."),
            ),
            ("timeout", duration("The limit for each API request.")),
        ],
    );
    let branches = [
        (flagd, &["type", "flags_file", "flag"][..]),
        (
            unleash,
            &["type", "url", "token", "environment", "flag"][..],
        ),
        (
            nginx,
            &["type", "upstream_file", "upstream", "stable", "canary"][..],
        ),
        (
            replicas,
            &[
                "type",
                "mode",
                "namespace",
                "stable_deployment",
                "canary_deployment",
                "replicas",
                "container",
                "image",
            ],
        ),
        (
            gateway,
            &[
                "type",
                "mode",
                "namespace",
                "route",
                "stable_service",
                "canary_service",
            ],
        ),
        (
            service,
            &["type", "mode", "cluster", "service", "container", "image"],
        ),
        (
            alb,
            &[
                "type",
                "mode",
                "cluster",
                "stable_target_group",
                "canary_target_group",
            ],
        ),
        (command, &["type", "set_weight"]),
    ];
    json!({
        "description": "The traffic backend: nginx, kubectl (mode replicas or gateway), ecs (mode service or alb), command, or a flag backend (flagd, unleash).",
        "oneOf": branches.into_iter().map(|(fields, required)| table("", required, fields)).collect::<Vec<_>>(),
    })
}

fn mirror_methods() -> Value {
    json!({
        "type": "array",
        "minItems": 1,
        "uniqueItems": true,
        "items": {"type": "string", "enum": crate::plan::METHODS},
        "description": "The request methods a mirror copies (default [\"GET\", \"HEAD\"]).",
    })
}

/// `[backend.segments.NAME]`: named groups that get the new version whatever the weight.
fn segments(segment: Value) -> Value {
    json!({
        "type": "object",
        "description": "Named groups that get the new version whatever the weight, from the stage that lists them on.",
        "additionalProperties": segment,
    })
}

/// A group of users, for flag backends: a context attribute and one test on it.
fn attribute_segment() -> Value {
    let mut segment = table(
        "A group of users by a context attribute.",
        &["attribute"],
        vec![
            ("attribute", string("The context field, e.g. \"email\".")),
            ("equals", string("The attribute equals this.")),
            ("ends_with", string("The attribute ends with this.")),
            ("in", strings("The attribute is one of these.")),
        ],
    );
    merge(
        &mut segment,
        json!({"oneOf": [{"required": ["equals"]}, {"required": ["ends_with"]}, {"required": ["in"]}]}),
    );
    segment
}

/// A group of requests, for nginx and the Gateway API: a header or a cookie.
fn request_segment() -> Value {
    let mut segment = table(
        "A group of requests by a header or a cookie.",
        &[],
        vec![
            ("header", string("The header's name.")),
            ("cookie", string("The cookie's name.")),
            ("value", string("The value it must have (default: any).")),
        ],
    );
    merge(
        &mut segment,
        json!({"oneOf": [{"required": ["header"]}, {"required": ["cookie"]}]}),
    );
    segment
}

fn source() -> Value {
    let http = |kind: &str| {
        table(
            "",
            &["type", "url"],
            vec![
                ("type", tag(kind)),
                (
                    "url",
                    string("The server; ${VAR} is read from the environment."),
                ),
                ("headers", json!({"$ref": "#/definitions/headers"})),
                ("timeout", duration("Per request (default 10s).")),
            ],
        )
    };
    let command = table(
        "",
        &["type"],
        vec![
            ("type", tag("command")),
            ("timeout", duration("Per command (default 30s).")),
        ],
    );
    json!({"oneOf": [http("prometheus"), http("http-json"), command]})
}

fn metric() -> Value {
    table(
        "A metric: where it is read, and the conditions that decide.",
        &["name", "source"],
        vec![
            (
                "name",
                string_with("Unique among the metrics.", json!({"pattern": NAME})),
            ),
            ("source", string("The [sources.NAME] it is read from.")),
            ("query", string("PromQL (prometheus sources).")),
            (
                "baseline",
                string("PromQL for the stable version, compared as `baseline`."),
            ),
            (
                "reduce",
                choice(
                    "How several series become one number.",
                    &["max", "min", "sum", "avg"],
                ),
            ),
            (
                "path",
                string("A JSON pointer into the response (http-json sources)."),
            ),
            ("baseline_path", string("A JSON pointer to the baseline.")),
            ("url", string("This metric's own URL (http-json sources).")),
            (
                "run",
                argv("The command that prints the value (command sources)."),
            ),
            (
                "baseline_run",
                argv("The command that prints the baseline."),
            ),
            (
                "advance",
                string("Must hold to advance, e.g. \"< 1%\" or \"<= baseline * 1.1\"."),
            ),
            (
                "rollback",
                string("A breach counts toward rollback, e.g. \"> 5%\"."),
            ),
            (
                "rollback_after",
                json!({"type": "integer", "minimum": 1, "description": "Consecutive breaches that roll back (default 1)."}),
            ),
            (
                "min_samples",
                json!({"type": "integer", "minimum": 1, "description": "Valid measurements needed in a stage (default 1)."}),
            ),
            (
                "min_coverage",
                json!({"type": "number", "minimum": 0, "maximum": 1, "description": "Share of measurements that must be valid (default 0.5)."}),
            ),
            (
                "on_no_data",
                choice(
                    "How no data counts (default inconclusive).",
                    &["inconclusive", "fail", "pass"],
                ),
            ),
            (
                "mode",
                choice(
                    "enforce (default) or warn: warn measures and reports, never gates.",
                    &["enforce", "warn"],
                ),
            ),
            (
                "max_breaches",
                json!({"type": "integer", "minimum": 0, "description": "Breaches in one stage, consecutive or not, that roll back (default 3, or rollback_after + 1 when larger; 0 turns it off)."}),
            ),
            (
                "judge",
                choice(
                    "Compare the canary's samples with the baseline's statistically, instead of advance/rollback.",
                    &["mann-whitney"],
                ),
            ),
            (
                "window",
                duration("A judged metric: how far back each comparison looks (default 5m)."),
            ),
            (
                "step",
                duration("A judged metric: the samples' resolution (default 15s)."),
            ),
            (
                "direction",
                choice(
                    "A judged metric: which way is worse (default increase).",
                    &["increase", "decrease", "either"],
                ),
            ),
            (
                "confidence",
                json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "A judged metric: how sure the test must be (default 0.98)."}),
            ),
            (
                "tolerance",
                json!({"type": "number", "minimum": 0, "description": "A judged metric: the relative difference of the medians tolerated (default 0.25)."}),
            ),
            (
                "min_points",
                json!({"type": "integer", "minimum": 1, "description": "A judged metric: fewer samples on either side is no data (default 10)."}),
            ),
        ],
    )
}

fn hook_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("run", argv("The command.")),
        (
            "timeout",
            duration("Its time limit (default: defaults.hook_timeout)."),
        ),
    ]
}

fn stage() -> Value {
    table(
        "One stage: its weight, and what overrides the defaults.",
        &["weight"],
        vec![
            (
                "weight",
                json!({"type": "number", "minimum": 0, "maximum": 100, "description": "Percent of traffic on the new version."}),
            ),
            ("bake", duration("How long it holds before it may advance.")),
            ("interval", duration("Metric poll interval.")),
            (
                "max_hold",
                duration("How long it may wait for passing evidence after its bake."),
            ),
            ("on_timeout", json!({"$ref": "#/definitions/halt"})),
            (
                "approval",
                boolean("Whether a person must approve before it advances."),
            ),
            (
                "metrics",
                strings("The metrics gating this stage (default all)."),
            ),
            (
                "segments",
                strings(
                    "Segments that get the new version from this stage on, whatever the weight.",
                ),
            ),
            (
                "mirror",
                json!({"type": "number", "minimum": 0, "maximum": 100, "description": "Percent of requests also copied to the new version, its answers discarded (nginx, kubectl gateway)."}),
            ),
            (
                "hooks",
                array(
                    "Run in order after the weight is applied, before the bake.",
                    table("", &["run"], hook_fields()),
                ),
            ),
        ],
    )
}

fn plan_hook() -> Value {
    let events: Vec<&str> = HookEvent::ALL.iter().map(|(name, _)| *name).collect();
    let mut fields = vec![("on", choice("When it runs.", &events))];
    fields.extend(hook_fields());
    table("", &["on", "run"], fields)
}

fn notify() -> Value {
    let events: Vec<&str> = NotifyOn::ALL.iter().map(|(name, _)| *name).collect();
    let common = |kind: &str| {
        vec![
            ("type", tag(kind)),
            (
                "url",
                string("A secret; ${VAR} is read from the environment."),
            ),
            (
                "on",
                json!({"type": "array", "minItems": 1, "items": {"enum": events}, "description": "Default: all but stage-started and stage-passed."}),
            ),
            ("timeout", duration("Per delivery attempt (default 5s).")),
        ]
    };
    let mut webhook = common("webhook");
    webhook.push(("headers", json!({"$ref": "#/definitions/headers"})));
    webhook.push((
        "secret",
        string("Signs the body: X-Rollout-Signature: sha256=HMAC-SHA256 in hex. Use ${VAR}."),
    ));
    json!({"oneOf": [
        table("A Slack incoming webhook.", &["type", "url"], common("slack")),
        table("A webhook: the JSON events of --output json.", &["type", "url"], webhook),
    ]})
}

fn window() -> Value {
    table(
        "When the rollout may start or advance; rolling back is always allowed.",
        &[],
        vec![
            (
                "days",
                array(
                    "The days it is open (default every day).",
                    json!({"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]}),
                ),
            ),
            (
                "hours",
                string_with(
                    "HH:MM-HH:MM, wall-clock time in `timezone` (default all day).",
                    json!({"pattern": "^[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}$"}),
                ),
            ),
            ("timezone", string("An IANA time zone (default UTC).")),
            (
                "freeze",
                strings(
                    "Closed periods, \"2026-12-20/2027-01-04\" (both days included) or one day.",
                ),
            ),
        ],
    )
}
