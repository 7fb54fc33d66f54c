//! The validated plan: every value checked and typed, every reference resolved to an index.
//! Nothing downstream of `plan::load` sees a raw string where a typed value belongs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::condition::Condition;
use super::flags::{FlagSpec, FlagdBackend, UnleashBackend};
use super::segments::{Segment, SegmentSet};
use super::template::Template;

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: Name,
    pub description: Option<String>,
    pub strategy: Strategy,
    pub on_interrupt: HaltAction,
    pub backend: Backend,
    pub sources: Vec<Source>,
    pub metrics: Vec<Metric>,
    pub stages: Vec<Stage>,
    pub hooks: Vec<PlanHook>,
    /// `[backend.segments]`, in file order; stages refer to them by index.
    pub segments: Vec<Segment>,
    /// `[state]`: where the rollout's state lives, unless the command line or environment says.
    pub state: StateConfig,
    /// `[[notify]]`: who is told what, in the background.
    pub notify: Vec<super::notify::Notify>,
    /// `[window]`: when the rollout may start or advance; `None`: any time.
    pub window: Option<super::window::Window>,
    /// `[defaults] stuck_after`: a stage that has not advanced after this long says so, once.
    pub stuck_after: Option<Duration>,
    /// SHA-256 of the plan file's bytes (hex), so a resumed run can tell the plan changed.
    pub fingerprint: String,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// A state URL (a path, `file://`, `s3://`, `gs://`, `az://`); `None`: the default.
    pub url: Option<String>,
    /// How long a shared store's lease lasts without renewal.
    pub lease: Duration,
}

impl StateConfig {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
    /// Renewals come every third of a lease, and each is one store round trip: shorter
    /// leases leave no room for a slow store.
    pub const MIN_LEASE: Duration = Duration::from_secs(3);
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            url: None,
            lease: StateConfig::DEFAULT_LEASE,
        }
    }
}

/// The schemes a state URL may use, besides a plain path.
pub const STATE_SCHEMES: [&str; 4] = ["file", "s3", "gs", "az"];

/// A name matching `[a-z0-9][a-z0-9-]*`: safe in file names, labels and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Option<Name> {
        let mut chars = text.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        (first_ok && rest_ok).then(|| Name(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Canary,
    BlueGreen,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        })
    }
}

/// A share of traffic in percent, 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Weight(f64);

impl Weight {
    pub const ZERO: Weight = Weight(0.0);
    pub const FULL: Weight = Weight(100.0);

    pub fn new(percent: f64) -> Option<Weight> {
        (0.0..=100.0).contains(&percent).then_some(Weight(percent))
    }

    pub fn percent(self) -> f64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }

    pub fn is_full(self) -> bool {
        self.0 == 100.0
    }

    /// The weight as a whole number of steps of `1 / steps_per_percent` percent, when it is
    /// one. Within float noise only: 0.1 has no exact binary form, yet it is 100 steps of 0.001%.
    pub fn in_steps(self, steps_per_percent: u64) -> Option<u64> {
        let scaled = self.0 * steps_per_percent as f64;
        let whole = scaled.round();
        ((scaled - whole).abs() <= 1e-6).then_some(whole as u64)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // f64's Display already prints 25 as "25" and 0.1 as "0.1".
        write!(f, "{}%", self.0)
    }
}

/// A measured number as people read it: four significant digits, no float noise
/// (`0.15207644301480122` is shown as `0.1521`).
pub fn show_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 8) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A metric's reading in the unit its conditions were written in: `0.1487` is `14.87%` for
/// a metric whose condition says `> 5%`.
pub fn show_reading(value: f64, percent: bool) -> String {
    if percent {
        format!("{}%", show_number(value * 100.0))
    } else {
        show_number(value)
    }
}

/// What to do when a stage cannot conclude (max_hold) or the run is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaltAction {
    Rollback,
    Pause,
}

impl fmt::Display for HaltAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaltAction::Rollback => "rollback",
            HaltAction::Pause => "pause",
        })
    }
}

/// A command as an argv array; the program is the first element and it is never run by a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Argv(Vec<String>);

impl Argv {
    /// `None` for an empty array: a command needs at least its program.
    pub fn new(args: Vec<String>) -> Option<Argv> {
        (!args.is_empty()).then_some(Argv(args))
    }

    pub fn program(&self) -> &str {
        &self.0[0]
    }

    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Argv {
    /// Shell-like quoting, for showing a command to a person; never executed as text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                f.write_str(arg)?;
            } else {
                write!(f, "'{}'", arg.replace('\'', "'\\''"))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub run: Argv,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookEvent {
    Started,
    StageStarted,
    StagePassed,
    Promoted,
    RolledBack,
    Paused,
    /// Not in the contract's list: the rollback itself failed and a person must act. The one
    /// moment a pager hook matters most.
    RollbackFailed,
}

impl HookEvent {
    pub const ALL: [(&'static str, HookEvent); 7] = [
        ("started", HookEvent::Started),
        ("stage-started", HookEvent::StageStarted),
        ("stage-passed", HookEvent::StagePassed),
        ("promoted", HookEvent::Promoted),
        ("rolled-back", HookEvent::RolledBack),
        ("paused", HookEvent::Paused),
        ("rollback-failed", HookEvent::RollbackFailed),
    ];

    pub fn as_str(self) -> &'static str {
        HookEvent::ALL
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("", |(name, _)| name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanHook {
    pub on: HookEvent,
    pub hook: Hook,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// 1-based, as people count stages and as `ROLLOUT_STAGE` reports them.
    pub number: usize,
    pub weight: Weight,
    pub bake: Duration,
    pub interval: Duration,
    pub max_hold: Duration,
    pub on_timeout: HaltAction,
    pub approval: bool,
    /// Indexes into `Plan::metrics` of the metrics measured in this stage (empty at weight 0).
    pub metrics: Vec<usize>,
    pub hooks: Vec<Hook>,
    /// The segments that get the new version in this stage, whatever the weight: its own and
    /// every earlier stage's (indexes into `Plan::segments`).
    pub segments: SegmentSet,
    /// `mirror`: the share of requests also copied to the new version, whose answers are
    /// discarded. This stage's own; `None` when it mirrors nothing.
    pub mirror: Option<Weight>,
}

impl Stage {
    /// Whether the new version gets anyone in this stage: a weight, segments, or mirrored
    /// copies. A stage that gets nobody has no bake and no gates.
    pub fn gets_traffic(&self) -> bool {
        !self.weight.is_zero() || !self.segments.is_empty() || self.mirror.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: Name,
    pub kind: SourceKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Prometheus { url: Template, headers: Headers },
    HttpJson { url: Template, headers: Headers },
    Command,
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Prometheus { .. } => "prometheus",
            SourceKind::HttpJson { .. } => "http-json",
            SourceKind::Command => "command",
        }
    }
}

/// HTTP headers whose values are secrets: templates are resolved at run start and the values
/// are never printed, logged or written to events.
pub type Headers = Vec<(String, Template)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoData {
    Inconclusive,
    Fail,
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    Enforce,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    Max,
    Min,
    Sum,
    Avg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: Name,
    /// Index into `Plan::sources`.
    pub source: usize,
    pub query: Query,
    pub advance: Option<Condition>,
    pub rollback: Option<Condition>,
    pub rollback_after: u32,
    pub min_samples: u32,
    pub min_coverage: f64,
    pub on_no_data: OnNoData,
    pub mode: MetricMode,
    /// `judge = "mann-whitney"`: compare samples with the baseline's instead of conditions.
    pub judge: Option<super::judge::Judge>,
    /// Breaches in one stage, in a row or not, that roll back; 0: no budget.
    pub max_breaches: u32,
}

impl Metric {
    /// Whether its conditions are written in percent, so its readings are shown in percent.
    pub fn in_percent(&self) -> bool {
        [&self.advance, &self.rollback]
            .into_iter()
            .flatten()
            .any(|c| c.in_percent())
    }
}

/// Where an HTTP source is reached: its URL and its headers (secrets), as templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Template,
    pub headers: Headers,
}

/// How a metric is read from its source. Validation pairs each metric with its source's kind
/// and gives it what it needs of the source (the endpoint), so readers need no second check.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Prometheus {
        endpoint: Endpoint,
        query: String,
        baseline: Option<String>,
        reduce: Option<Reduce>,
    },
    HttpJson {
        /// The metric's own `url` when it has one, else its source's, with the source's headers.
        endpoint: Endpoint,
        path: String,
        baseline_path: Option<String>,
    },
    Command {
        run: Argv,
        baseline_run: Option<Argv>,
    },
}

impl Query {
    pub fn has_baseline(&self) -> bool {
        match self {
            Query::Prometheus { baseline, .. } => baseline.is_some(),
            Query::HttpJson { baseline_path, .. } => baseline_path.is_some(),
            Query::Command { baseline_run, .. } => baseline_run.is_some(),
        }
    }
}

/// What a stage's weight is a share of: requests (a proxy, a load balancer, pods) or users (a
/// feature flag, which buckets users by their targeting key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    Traffic,
    Users,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Nginx(NginxBackend),
    Kubectl(KubectlBackend),
    Ecs(EcsBackend),
    Command(CommandBackend),
    Flagd(FlagdBackend),
    Unleash(UnleashBackend),
}

impl Backend {
    pub fn audience(&self) -> Audience {
        match self {
            Backend::Flagd(_) | Backend::Unleash(_) => Audience::Users,
            _ => Audience::Traffic,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::Nginx(_) => "nginx",
            Backend::Kubectl(_) => "kubectl",
            Backend::Ecs(_) => "ecs",
            Backend::Command(_) => "command",
            Backend::Flagd(_) => "flagd",
            Backend::Unleash(_) => "unleash",
        }
    }

    /// The flag a flag backend rolls out; `None` for backends that move requests.
    pub fn flag(&self) -> Option<&dyn FlagSpec> {
        match self {
            Backend::Flagd(spec) => Some(spec),
            Backend::Unleash(spec) => Some(spec),
            _ => None,
        }
    }
}

/// nginx weights are integers, and the nginx backend splits 100% into this many steps per
/// percent: 0.001% is the smallest weight change it can express exactly.
pub const NGINX_STEPS_PER_PERCENT: u64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct NginxBackend {
    pub upstream_file: PathBuf,
    pub upstream: String,
    pub stable: Vec<String>,
    pub canary: Vec<String>,
    pub test_command: Argv,
    pub reload_command: Argv,
    pub verify_command: Option<Argv>,
    /// The nginx master's pid file: a reload is confirmed when new worker processes appear.
    pub pid_file: Option<PathBuf>,
    pub extra: Vec<String>,
    pub command_timeout: Duration,
    /// The second file rollout owns, included inside the location that proxies to the
    /// upstream: mirroring and segment routing live there.
    pub location_file: Option<PathBuf>,
    /// The request methods a mirror copies (default GET and HEAD).
    pub mirror_methods: Vec<String>,
    /// How long nginx gives a mirrored copy to connect, send and be answered: a kept-alive
    /// client's next request waits for the copy of its previous one, so this bounds what a
    /// slow new version costs clients under a mirror. Whole milliseconds.
    pub mirror_timeout: Duration,
}

impl NginxBackend {
    /// The command that prints nginx's whole configuration (`nginx -T`): `test_command` with its
    /// `-t` turned into `-T`, when it runs nginx with exactly one `-t` (directly, or behind a
    /// prefix such as `sudo` or `docker exec NAME`). `None` for other wrappers (a script, `sh
    /// -c`), whose output rollout cannot know to be nginx's.
    pub fn dump_command(&self) -> Option<Argv> {
        let args = self.test_command.as_slice();
        let nginx = args.iter().position(|a| {
            std::path::Path::new(a)
                .file_name()
                .is_some_and(|n| n == "nginx")
        })?;
        let flags: Vec<usize> = (nginx + 1..args.len())
            .filter(|&i| args[i] == "-t" || args[i] == "-T")
            .collect();
        let [flag] = flags.as_slice() else {
            return None;
        };
        let mut dump = args.to_vec();
        dump[*flag] = "-T".to_string();
        Argv::new(dump)
    }
}

/// `type = "kubectl"`: what every mode shares, and the mode with exactly its own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct KubectlBackend {
    pub connection: KubectlConnection,
    pub rollout_timeout: Duration,
    pub mode: KubectlMode,
}

/// Which cluster and namespace every kubectl command talks to.
#[derive(Debug, Clone, PartialEq)]
pub struct KubectlConnection {
    pub kubectl: String,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KubectlMode {
    Replicas(ReplicasSpec),
    Gateway(GatewaySpec),
}

/// `mode = "replicas"`: pods split between two Deployments.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicasSpec {
    pub stable_deployment: String,
    pub canary_deployment: String,
    pub replicas: u32,
    pub container: String,
    pub image: String,
}

/// `mode = "gateway"`: the weights of an HTTPRoute's backendRefs to two Services.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySpec {
    pub route: String,
    pub stable_service: String,
    pub canary_service: String,
    /// The request methods a mirror copies (default GET and HEAD).
    pub mirror_methods: Vec<String>,
}

/// `type = "ecs"`: what both modes share, and the mode with exactly its own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsBackend {
    pub aws: EcsAws,
    pub mode: EcsMode,
}

/// Where the ECS backend acts, whatever its mode.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsAws {
    pub cluster: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// How long a service may take to become steady on a new task definition.
    pub deploy_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EcsMode {
    Service(EcsServiceSpec),
    Alb(EcsAlbSpec),
}

/// `mode = "service"`: one service gets the new image. Validation has allowed it only the
/// weights 0 and 100.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsServiceSpec {
    pub update: EcsImageUpdate,
}

/// `mode = "alb"`: the weights of two target groups on one forward action.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsAlbSpec {
    pub listener: AlbListener,
    pub stable_target_group: String,
    pub canary_target_group: String,
    /// `canary_service`, `container` and `image`: the canary service gets the new image first.
    pub canary_update: Option<EcsImageUpdate>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlbListener {
    Listener(String),
    Rule(String),
}

/// A service that gets a new image: a new revision of its task definition with `image` on
/// `container`.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsImageUpdate {
    pub service: String,
    pub container: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandBackend {
    pub set_weight: Argv,
    pub promote: Option<Argv>,
    pub rollback: Option<Argv>,
    pub verify: Option<Argv>,
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in ["a", "checkout-api", "0day", "a-b-c-1"] {
            assert!(Name::parse(good).is_some(), "{good}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "é", "a b"] {
            assert!(Name::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn weights_print_as_percent_without_trailing_zeros() {
        assert_eq!(Weight::new(25.0).unwrap().to_string(), "25%");
        assert_eq!(Weight::new(0.1).unwrap().to_string(), "0.1%");
        assert!(Weight::new(100.5).is_none());
        assert!(Weight::new(-1.0).is_none());
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let argv = Argv::new(vec!["echo".into(), "a b".into(), "it's".into()]).unwrap();
        assert_eq!(argv.to_string(), "echo 'a b' 'it'\\''s'");
        assert!(Argv::new(vec![]).is_none());
    }

    #[test]
    fn weights_in_steps_tolerate_float_noise_only() {
        let steps = |w: f64| Weight::new(w).unwrap().in_steps(NGINX_STEPS_PER_PERCENT);
        assert_eq!(steps(0.1), Some(100));
        assert_eq!(steps(33.333), Some(33_333));
        assert_eq!(steps(100.0), Some(100_000));
        assert_eq!(steps(0.0004), None);
        assert_eq!(steps(99.9996), None);
    }

    #[test]
    fn the_nginx_dump_command_comes_from_an_nginx_test_command() {
        let dump = |test: &[&str]| {
            let spec = NginxBackend {
                upstream_file: "/u.conf".into(),
                upstream: "app".into(),
                stable: vec![],
                canary: vec![],
                test_command: Argv::new(test.iter().map(|a| a.to_string()).collect()).unwrap(),
                reload_command: Argv::new(vec!["nginx".into()]).unwrap(),
                verify_command: None,
                pid_file: None,
                extra: vec![],
                command_timeout: Duration::from_secs(1),
                location_file: None,
                mirror_methods: vec![],
                mirror_timeout: Duration::from_secs(1),
            };
            spec.dump_command().map(|a| a.to_string())
        };
        assert_eq!(dump(&["nginx", "-t"]).as_deref(), Some("nginx -T"));
        assert_eq!(
            dump(&[
                "/usr/sbin/nginx",
                "-p",
                "/x/",
                "-c",
                "/x/n.conf",
                "-t",
                "-q"
            ])
            .as_deref(),
            Some("/usr/sbin/nginx -p /x/ -c /x/n.conf -T -q")
        );
        assert_eq!(
            dump(&["docker", "exec", "edge", "nginx", "-t"]).as_deref(),
            Some("docker exec edge nginx -T")
        );
        assert_eq!(dump(&["nginx", "-T"]).as_deref(), Some("nginx -T"));
        assert_eq!(dump(&["sh", "-c", "sleep 1; nginx -t"]), None);
        assert_eq!(dump(&["./check-nginx.sh", "-t"]), None);
        assert_eq!(dump(&["nginx", "-t", "-t"]), None);
        assert_eq!(dump(&["nginx"]), None);
    }
}
