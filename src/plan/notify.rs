//! `[[notify]]`: who is told what, as the rollout happens. Slack incoming webhooks and plain
//! webhooks (signed when a `secret` is given). Their URLs and headers are secrets, like a
//! source's headers: `${VAR}` is read from the environment and nothing shows them.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::diagnostic::Diagnostic;
use super::model::Headers;
use super::reader::{At, Field, Table};
use super::template::Template;

/// How long one delivery attempt may take, unless the plan says.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// The moments a notification can be sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    Started,
    StageStarted,
    StagePassed,
    ApprovalNeeded,
    Stuck,
    Promoted,
    RolledBack,
    Paused,
    RollbackFailed,
}

impl NotifyOn {
    pub const ALL: [(&'static str, NotifyOn); 9] = [
        ("started", NotifyOn::Started),
        ("stage-started", NotifyOn::StageStarted),
        ("stage-passed", NotifyOn::StagePassed),
        ("approval-needed", NotifyOn::ApprovalNeeded),
        ("stuck", NotifyOn::Stuck),
        ("promoted", NotifyOn::Promoted),
        ("rolled-back", NotifyOn::RolledBack),
        ("paused", NotifyOn::Paused),
        ("rollback-failed", NotifyOn::RollbackFailed),
    ];

    /// Without `on`: everything but the per-stage chatter.
    pub fn defaults() -> Vec<NotifyOn> {
        NotifyOn::ALL
            .iter()
            .map(|(_, on)| *on)
            .filter(|on| !matches!(on, NotifyOn::StageStarted | NotifyOn::StagePassed))
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        NotifyOn::ALL
            .iter()
            .find(|(_, on)| *on == self)
            .map_or("", |(name, _)| name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// `notify[0]`: how messages and warnings name it, since its URL is a secret.
    pub label: String,
    pub kind: NotifyKind,
    pub url: Template,
    pub on: Vec<NotifyOn>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifyKind {
    /// A Slack incoming webhook: a one-line message per event.
    Slack,
    /// The event as `--output json` writes it, POSTed; signed with HMAC-SHA256 when `secret`.
    Webhook {
        headers: Headers,
        secret: Option<Template>,
    },
}

impl Notify {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NotifyKind::Slack => "slack",
            NotifyKind::Webhook { .. } => "webhook",
        }
    }

    /// Every template that holds a secret: the URL, header values, the signing secret.
    pub fn secrets(&self) -> Vec<&Template> {
        let mut out = vec![&self.url];
        if let NotifyKind::Webhook { headers, secret } = &self.kind {
            out.extend(headers.iter().map(|(_, v)| v));
            out.extend(secret);
        }
        out
    }
}

impl fmt::Display for Notify {
    /// `notify[0] (slack)`: never the URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.label, self.type_name())
    }
}

/// Reads every `[[notify]]` entry; entries with problems are left out (and recorded).
pub fn read(root: &Table<'_, '_>) -> Vec<Notify> {
    let Some(f) = root.field("notify") else {
        return Vec::new();
    };
    let Some(items) = f.get().array() else {
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let path = format!("notify[{i}]");
            read_one(&Field::new(item.cx, item.value, path.clone()), path)
        })
        .collect()
}

fn read_one(f: &Field<'_, '_>, label: String) -> Option<Notify> {
    let table = f.table()?;
    let kind = table
        .required("type", "type = \"slack\"")
        .and_then(|t| t.get().choice(&[("slack", false), ("webhook", true)]));
    // Secrets are marked before anything is reported: a diagnostic shows whole lines.
    for key in ["url", "secret"] {
        if let Some(value) = table.peek(key) {
            value.cx.redact(value.span());
        }
    }
    if let Some(headers) = table.peek("headers") {
        super::parse::redact_header_values(&headers);
    }
    let url = table
        .required("url", "url = \"${SLACK_WEBHOOK_URL}\"")
        .and_then(|u| secret_url(&u.get()));
    let on = match table.field("on") {
        Some(on) => events(&on.get()),
        None => Some(NotifyOn::defaults()),
    };
    let timeout = table
        .field("timeout")
        .map_or(Some(DEFAULT_NOTIFY_TIMEOUT), |t| {
            t.get().positive_duration()
        });
    let kind = match kind {
        Some(true) => Some(webhook(&table)?),
        Some(false) => Some(NotifyKind::Slack),
        None => None,
    };
    let is_slack = kind == Some(NotifyKind::Slack);
    table.finish(|key| {
        (is_slack && matches!(key, "headers" | "secret")).then(|| {
            format!("a Slack incoming webhook takes no `{key}`; use type = \"webhook\" for a signed or authenticated endpoint")
        })
    });
    Some(Notify {
        label,
        kind: kind?,
        url: url?,
        on: on?,
        timeout: timeout?,
    })
}

fn webhook(table: &Table<'_, '_>) -> Option<NotifyKind> {
    let headers = table
        .field("headers")
        .map_or_else(Vec::new, |h| super::parse::read_headers(&h));
    let secret = match table.field("secret") {
        None => None,
        Some(s) => {
            let s = s.get();
            let template = super::parse::template(&s, false)?;
            if template.value.vars().next().is_none() {
                literal_secret_warning(&s);
            }
            Some(template.value)
        }
    };
    Some(NotifyKind::Webhook { headers, secret })
}

/// A notification URL is a credential (a Slack webhook URL is all it takes to post): it
/// is checked like a source URL but never shown.
fn secret_url(f: &Field<'_, '_>) -> Option<Template> {
    let at: At<Template> = super::parse::template(f, true)?;
    Some(at.value)
}

fn literal_secret_warning(f: &Field<'_, '_>) {
    f.cx.push(
        Diagnostic::warning(
            f.path(),
            f.span(),
            "a signing secret is written into the plan file",
        )
        .label("read it from the environment instead")
        .help("for example: secret = \"${ROLLOUT_WEBHOOK_SECRET}\""),
    );
}

fn events(f: &Field<'_, '_>) -> Option<Vec<NotifyOn>> {
    let items = f.array()?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match item.choice(&NotifyOn::ALL) {
            Some(on) if !out.contains(&on) => out.push(on),
            Some(_) => {}
            None => ok = false,
        }
    }
    if ok && out.is_empty() {
        f.cx.push(
            f.error("`on` names no event")
                .label("empty")
                .help("name the events to send, e.g. on = [\"rolled-back\", \"rollback-failed\"], or leave `on` out for the defaults"),
        );
        return None;
    }
    ok.then_some(out)
}
