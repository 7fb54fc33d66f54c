//! Segments: named groups of users (flag backends) or requests (nginx, kubectl gateway) that
//! get the new version from a stage on, whatever its weight.
//!
//! `[backend.segments.NAME]` defines them with the backend (what a group is depends on what
//! the backend can match: a context attribute for a flag, a header or a cookie for a proxy);
//! a stage's `segments = ["NAME", ...]` switches them on, and they stay on in every later stage
//! until promotion or rollback. Validation resolves names to indexes into `Plan::segments`,
//! so a stage carries a `SegmentSet`: a few bits, cheap to copy into every `WeightChange`.

use std::fmt;

use super::diagnostic::Diagnostic;
use super::model::{Backend, KubectlMode, Name, Stage};
use super::raw::RawStage;
use super::reader::{At, Cx, Field, Table, join, suggest};

/// A plan defines at most this many segments: a `SegmentSet` is one `u64`.
pub const MAX_SEGMENTS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: Name,
    pub rule: SegmentRule,
}

/// What puts a user or a request in a segment.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentRule {
    /// Flag backends: a field of the evaluation context (`email`, `country`, ...).
    Attribute {
        attribute: String,
        test: AttributeTest,
    },
    /// nginx and kubectl gateway: a request header, with any value unless one is given.
    Header { name: String, value: Option<String> },
    /// nginx and kubectl gateway: a cookie, with any value unless one is given.
    Cookie { name: String, value: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttributeTest {
    Equals(String),
    EndsWith(String),
    In(Vec<String>),
}

/// Which segments get the new version: indexes into `Plan::segments`, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SegmentSet(u64);

impl SegmentSet {
    pub const EMPTY: SegmentSet = SegmentSet(0);

    /// `index` must be below `MAX_SEGMENTS` (validation allows no more segments).
    pub fn with(self, index: usize) -> SegmentSet {
        debug_assert!(index < MAX_SEGMENTS);
        SegmentSet(self.0 | 1 << index)
    }

    pub fn contains(self, index: usize) -> bool {
        index < MAX_SEGMENTS && self.0 & (1 << index) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: SegmentSet) -> SegmentSet {
        SegmentSet(self.0 | other.0)
    }

    /// The indexes in the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_SEGMENTS).filter(move |&i| self.contains(i))
    }
}

impl fmt::Display for SegmentSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.iter().map(|i| i.to_string()).collect();
        write!(f, "{{{}}}", list.join(", "))
    }
}

/// What kind of segment a backend matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Flag backends: `attribute` with `equals`, `ends_with` or `in`.
    Attribute,
    /// Proxies: `header` or `cookie`, with an optional `value`.
    Request,
}

const ATTRIBUTE_FIELDS: [&str; 4] = ["attribute", "equals", "ends_with", "in"];
const REQUEST_FIELDS: [&str; 3] = ["header", "cookie", "value"];

/// `[backend.segments]` of a backend whose segments are of `family`; each segment is located
/// at its name.
pub fn read(table: &Table<'_, '_>, family: Family) -> Vec<At<Segment>> {
    let Some(segments) = table.field("segments").and_then(|f| f.get().table()) else {
        return Vec::new();
    };
    let entries = segments.entries();
    let out = entries
        .into_iter()
        .filter_map(|(name, f)| {
            let segment = read_one(&name, &f, family)?;
            Some(At::new(segment, name.span))
        })
        .collect::<Vec<_>>();
    segments.finish(|_| None);
    if out.len() > MAX_SEGMENTS {
        table.push(
            Diagnostic::error(
                join(table.path(), "segments"),
                segments.span(),
                format!(
                    "{} segments are defined; a plan may define at most {MAX_SEGMENTS}",
                    out.len()
                ),
            )
            .label("too many segments")
            .help("merge groups with `in = [...]` lists"),
        );
        return Vec::new();
    }
    out
}

fn read_one(name: &At<String>, f: &Field<'_, '_>, family: Family) -> Option<Segment> {
    let table = f.get().table()?;
    let valid_name = Name::parse(&name.value);
    if valid_name.is_none() {
        table.push(
            Diagnostic::error(f.path(), name.span.clone(), format!("`{}` is not a valid segment name", name.value))
                .label("invalid name")
                .help("names are lowercase letters, digits and `-`, starting with a letter or digit, e.g. \"beta-testers\""),
        );
    }
    let (own, foreign): (&[&str], &[&str]) = match family {
        Family::Attribute => (&ATTRIBUTE_FIELDS, &REQUEST_FIELDS),
        Family::Request => (&REQUEST_FIELDS, &ATTRIBUTE_FIELDS),
    };
    let written = |keys: &[&str]| keys.iter().any(|k| table.peek(k).is_some());
    // A segment written for another kind of backend: its fields say so, once.
    let rule = if written(foreign) && !written(own) {
        None
    } else {
        match family {
            Family::Attribute => attribute_rule(&table),
            Family::Request => request_rule(&table),
        }
    };
    table.finish(|key| other_family(key, family));
    Some(Segment {
        name: valid_name?,
        rule: rule?,
    })
}

/// Fields of the other kind of segment, named as such.
fn other_family(key: &str, family: Family) -> Option<String> {
    match family {
        Family::Attribute if REQUEST_FIELDS.contains(&key) => Some(format!(
            "`{key}` defines a segment of requests (nginx, kubectl with mode = \"gateway\"); a flag backend's segment matches a context attribute: attribute = \"email\" with one of `equals`, `ends_with` or `in`"
        )),
        Family::Request if ATTRIBUTE_FIELDS.contains(&key) => Some(format!(
            "`{key}` defines a segment of users for a flag backend (flagd, unleash); this backend's segment matches a request: header = \"X-Canary\" or cookie = \"canary\", with an optional `value`"
        )),
        _ => None,
    }
}

fn non_empty_string(table: &Table<'_, '_>, key: &'static str) -> Option<String> {
    let f = table.field(key)?;
    let f = f.get();
    let text = f.str()?;
    if text.is_empty() {
        table.push(f.error("must not be empty").label("empty"));
        return None;
    }
    Some(text.to_string())
}

fn attribute_rule(table: &Table<'_, '_>) -> Option<SegmentRule> {
    let attribute = table.required("attribute", "attribute = \"email\"");
    let attribute = attribute.and_then(|_| non_empty_string(table, "attribute"));
    let tests: Vec<(&str, Field<'_, '_>)> = ["equals", "ends_with", "in"]
        .into_iter()
        .filter_map(|key| table.peek(key).map(|f| (key, f)))
        .collect();
    // All three are fields of this table, whichever is written: an unknown field's help lists
    // them all.
    for key in ["equals", "ends_with", "in"] {
        let _ = table.field(key);
    }
    let test = match tests.as_slice() {
        [] => {
            table.push(
                Diagnostic::error(
                    table.path(),
                    table.span(),
                    "the segment says no value to match",
                )
                .label("needs one of `equals`, `ends_with` or `in`")
                .help("for example: ends_with = \"@example.com\", or in = [\"de\", \"fr\"]"),
            );
            None
        }
        [(key, _)] => attribute_test(table, key),
        [_, (second, f), ..] => {
            table.push(
                f.error(format!("a segment matches in one way only; `{second}` is a second one"))
                    .label("second test")
                    .help("give exactly one of `equals`, `ends_with` or `in`; define another segment for another group"),
            );
            None
        }
    };
    Some(SegmentRule::Attribute {
        attribute: attribute?,
        test: test?,
    })
}

fn attribute_test(table: &Table<'_, '_>, key: &str) -> Option<AttributeTest> {
    match key {
        "equals" => non_empty_string(table, "equals").map(AttributeTest::Equals),
        "ends_with" => non_empty_string(table, "ends_with").map(AttributeTest::EndsWith),
        _ => {
            let f = table.field("in")?;
            let f = f.get();
            let values = f.strings("in = [\"de\", \"fr\"]")?;
            if values.is_empty() {
                table.push(
                    f.error("the list is empty: nobody would be in the segment")
                        .label("empty")
                        .help("list at least one value, e.g. in = [\"de\", \"fr\"]"),
                );
                return None;
            }
            Some(AttributeTest::In(
                values.into_iter().map(|v| v.value).collect(),
            ))
        }
    }
}

/// An HTTP token: the characters a header or cookie name may have.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A value a proxy can match exactly: visible ASCII, single spaces or tabs between (the
/// Gateway API's pattern for header values, `^[!-~]+([\t ]?[!-~]+)*$`).
fn is_field_value(text: &str) -> bool {
    let visible = |b: u8| (b'!'..=b'~').contains(&b);
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && visible(bytes[0])
        && visible(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| visible(b) || b == b' ' || b == b'\t')
        && !bytes.windows(2).any(|w| !visible(w[0]) && !visible(w[1]))
}

fn request_rule(table: &Table<'_, '_>) -> Option<SegmentRule> {
    let header = table.field("header");
    let cookie = table.field("cookie");
    let value = table.field("value").and_then(|f| {
        let f = f.get();
        let text = f.str()?;
        if is_field_value(text) {
            return Some(text.to_string());
        }
        table.push(
            f.error(format!("`{text}` cannot be a header or cookie value"))
                .label("not printable ASCII, or space at an end or doubled")
                .help("values are printable ASCII characters, with single spaces between words, e.g. \"yes\""),
        );
        None
    });
    let (key, f) = match (header, cookie) {
        (Some(h), None) => ("header", h),
        (None, Some(c)) => ("cookie", c),
        (Some(_), Some(c)) => {
            table.push(
                c.get()
                    .error("a segment matches a header or a cookie, not both")
                    .label("second match")
                    .help("define another segment for the cookie"),
            );
            return None;
        }
        (None, None) => {
            table.push(
                Diagnostic::error(table.path(), table.span(), "the segment says nothing to match")
                    .label("needs `header` or `cookie`")
                    .help("for example: header = \"X-Canary\" (any value), or cookie = \"beta\" with value = \"yes\""),
            );
            return None;
        }
    };
    let f = f.get();
    let name = f.str()?;
    if !is_token(name) {
        table.push(
            f.error(format!("`{name}` is not a valid {key} name"))
                .label(format!("invalid {key} name"))
                .help("names are letters, digits and `-`, e.g. \"X-Canary\""),
        );
        return None;
    }
    let name = name.to_string();
    Some(if key == "header" {
        SegmentRule::Header { name, value }
    } else {
        SegmentRule::Cookie { name, value }
    })
}

/// Whether a stage lists segments, so that it gets traffic even at weight 0.
pub fn lists_segments(raw: &RawStage) -> bool {
    raw.segments.as_ref().is_some_and(|s| !s.value.is_empty())
}

/// Whether the backend can give a named group the new version: flag backends, nginx and the
/// kubectl gateway.
pub fn routes_segments(backend: &Backend) -> bool {
    match backend {
        Backend::Flagd(_) | Backend::Unleash(_) | Backend::Nginx(_) => true,
        Backend::Kubectl(k) => matches!(k.mode, KubectlMode::Gateway(_)),
        Backend::Ecs(_) | Backend::Command(_) => false,
    }
}

/// Each stage that lists segments, for a backend that cannot route them: one error there,
/// rather than every name reported as undefined.
pub fn cannot_route(cx: &Cx, backend: &Backend, raw: &[RawStage]) {
    for (index, stage) in raw.iter().enumerate() {
        let Some(list) = stage.segments.as_ref().filter(|l| !l.value.is_empty()) else {
            continue;
        };
        cx.push(
            Diagnostic::error(
                join(&stage.path, "segments"),
                list.span.clone(),
                format!(
                    "stage {} routes segments, but the {} backend cannot give a group the new version",
                    index + 1,
                    super::mirror::describe(backend)
                ),
            )
            .label("not supported by this backend")
            .help("segments work with the flagd and unleash backends, nginx (with location_file) and kubectl with mode = \"gateway\"; leave `segments` out here"),
        );
    }
}

/// Resolves each stage's `segments` to indexes, and gives every stage its cumulative set:
/// its own and every earlier stage's.
pub fn resolve(cx: &Cx, stages: &mut [Stage], raw: &[RawStage], defined: &[At<Segment>]) {
    let mut active = SegmentSet::EMPTY;
    let mut since: Vec<Option<usize>> = vec![None; defined.len()];
    for (stage, raw) in stages.iter_mut().zip(raw) {
        let Some(list) = &raw.segments else {
            stage.segments = active;
            continue;
        };
        let path = join(&raw.path, "segments");
        for entry in &list.value {
            let Some(index) = defined
                .iter()
                .position(|s| s.value.name.as_str() == entry.value)
            else {
                unknown(cx, &path, entry, defined);
                continue;
            };
            if let Some(first) = since[index] {
                let (message, label) = if first == stage.number {
                    (
                        format!("`{}` is listed twice", entry.value),
                        "duplicate".to_string(),
                    )
                } else {
                    (
                        format!(
                            "`{}` already gets the new version since stage {first}",
                            entry.value
                        ),
                        "listed again".to_string(),
                    )
                };
                cx.push(
                    Diagnostic::warning(&path, entry.span.clone(), message)
                        .label(label)
                        .help("segments stay on in every later stage until promotion or rollback; list each one once, at the stage that switches it on"),
                );
                continue;
            }
            since[index] = Some(stage.number);
            active = active.with(index);
        }
        if stage.weight.is_full() && !list.value.is_empty() {
            cx.push(
                Diagnostic::warning(&path, list.span.clone(), "segments at 100% change nothing")
                    .label("everyone gets the new version here")
                    .help(
                        "switch segments on at a stage below 100, where they decide who is first",
                    ),
            );
        }
        stage.segments = active;
    }
    for (segment, first) in defined.iter().zip(&since) {
        if first.is_none() {
            cx.push(
                Diagnostic::warning(
                    format!("backend.segments.{}", segment.value.name),
                    segment.span.clone(),
                    format!(
                        "segment `{}` is defined but no stage uses it",
                        segment.value.name
                    ),
                )
                .label("unused")
                .help("add it to a stage: segments = [\"NAME\"]"),
            );
        }
    }
}

fn unknown(cx: &Cx, path: &str, entry: &At<String>, defined: &[At<Segment>]) {
    let names: Vec<&str> = defined.iter().map(|s| s.value.name.as_str()).collect();
    let help = match suggest(&entry.value, names.iter().copied()) {
        Some(close) => format!("did you mean \"{close}\"?"),
        None if names.is_empty() => "define it under [backend.segments.NAME] first".to_string(),
        None => format!(
            "defined segments: {}",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    cx.push(
        Diagnostic::error(
            path,
            entry.span.clone(),
            format!("no segment named `{}`", entry.value),
        )
        .label("unknown segment")
        .help(help),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_set_is_a_small_copyable_set_of_indexes() {
        let set = SegmentSet::EMPTY.with(0).with(3).with(63);
        assert!(set.contains(3) && set.contains(63) && !set.contains(1));
        assert!(!set.contains(64));
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 3, 63]);
        assert_eq!(set.to_string(), "{0, 3, 63}");
        assert_eq!(SegmentSet::EMPTY.with(1).union(set).iter().count(), 4);
        assert!(SegmentSet::EMPTY.is_empty());
        assert_eq!(std::mem::size_of::<SegmentSet>(), 8);
    }

    #[test]
    fn field_values_are_printable_ascii_with_single_spaces_between() {
        for good in ["yes", "a b", "a\tb", "iOS 17.2", "\"quoted\"", "~!"] {
            assert!(is_field_value(good), "{good:?}");
        }
        for bad in ["", " a", "a ", "a  b", "a \tb", "é", "a\nb", "\u{7f}"] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }
}
