//! Reads the spanned TOML tree field by field, recording every problem instead of stopping at
//! the first, so that `rollout validate` can report them all at once.

use std::cell::RefCell;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Span};

/// A value with the place in the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub span: Span,
}

impl<T> At<T> {
    pub fn new(value: T, span: Span) -> Self {
        At { value, span }
    }
}

/// Collects diagnostics while the plan is read and validated.
#[derive(Debug, Default)]
pub struct Cx {
    text: String,
    diagnostics: RefCell<Vec<Diagnostic>>,
    redacted: RefCell<Vec<Span>>,
}

impl Cx {
    pub fn new(text: &str) -> Self {
        Cx {
            text: text.to_string(),
            diagnostics: RefCell::default(),
            redacted: RefCell::default(),
        }
    }

    /// The file's text from `offset` on, or "" when it is not a character boundary.
    pub fn text_from(&self, offset: usize) -> &str {
        self.text.get(offset..).unwrap_or("")
    }

    /// The file's text under `span`, or "" when the span is not inside it.
    pub fn source(&self, span: &Span) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }

    pub fn push(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().push(diagnostic);
    }

    /// Marks a span of the file as secret: diagnostics never show it.
    pub fn redact(&self, span: Span) {
        self.redacted.borrow_mut().push(span);
    }

    /// The diagnostics, and the spans to redact when showing the file.
    pub fn finish(self) -> (Vec<Diagnostic>, Vec<Span>) {
        (self.diagnostics.into_inner(), self.redacted.into_inner())
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.borrow().iter().any(Diagnostic::is_error)
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// No duration in a plan is longer: it keeps every sum of them far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// One TOML value at a known field path.
#[derive(Clone)]
pub struct Field<'a, 'i> {
    pub cx: &'a Cx,
    pub value: &'a Value<'i>,
    pub path: String,
}

/// A field path grows as the reader descends: `stages[2].hooks[0].run`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> Field<'a, 'i> {
    pub fn new(cx: &'a Cx, value: &'a Value<'i>, path: impl Into<String>) -> Self {
        Field {
            cx,
            value,
            path: path.into(),
        }
    }

    pub fn span(&self) -> Span {
        self.value.span()
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field itself; lets `Table::field(..)` results be used like the old two-step API.
    pub fn get(&self) -> Field<'a, 'i> {
        self.clone()
    }

    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.path, self.span(), message)
    }

    fn wrong_type<T>(&self, expected: &str, example: &str) -> Option<T> {
        let found = type_name(self.value.get_ref());
        let mut d = self
            .error(format!("expected {expected}, found {found}"))
            .label(format!("this is {found}"));
        if !example.is_empty() {
            d = d.help(format!("for example: {example}"));
        }
        self.cx.push(d);
        None
    }

    pub fn str(&self) -> Option<&'a str> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => self.wrong_type("a string", ""),
        }
    }

    pub fn string(&self) -> Option<At<String>> {
        self.str().map(|s| At::new(s.to_string(), self.span()))
    }

    pub fn bool(&self) -> Option<bool> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => self.wrong_type("true or false", "approval = true"),
        }
    }

    /// A whole number within `range`, e.g. `rollback_after = 2`.
    pub fn count(&self, min: u32, example: &str) -> Option<u32> {
        let DeValue::Integer(i) = self.value.get_ref() else {
            return self.wrong_type("a whole number", example);
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= i64::from(min) && n <= i64::from(u32::MAX) => Some(n as u32),
            _ => {
                self.cx.push(
                    self.error(format!("must be a whole number of at least {min}"))
                        .label(format!("found {i}")),
                );
                None
            }
        }
    }

    /// An integer or a decimal number.
    pub fn number(&self, example: &str) -> Option<f64> {
        let parsed = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => return self.wrong_type("a number", example),
        };
        match parsed {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.cx.push(
                    self.error("must be a finite number")
                        .label("not a finite number"),
                );
                None
            }
        }
    }

    /// A humantime duration such as `"30s"`, `"5m"` or `"1h 30m"`.
    pub fn duration(&self) -> Option<Duration> {
        let DeValue::String(text) = self.value.get_ref() else {
            if matches!(
                self.value.get_ref(),
                DeValue::Integer(_) | DeValue::Float(_)
            ) {
                self.cx.push(
                    self.error("expected a duration string, found a number")
                        .label("a bare number has no unit")
                        .help("write the unit in a string, e.g. \"30s\", \"5m\" or \"1h 30m\""),
                );
                return None;
            }
            return self.wrong_type("a duration string", "\"30s\"");
        };
        match humantime::parse_duration(text) {
            Ok(d) if d > MAX_DURATION => {
                self.cx.push(
                    self.error(format!("`{text}` is longer than a year"))
                        .label("too long")
                        .help("a rollout's bakes, holds and timeouts are at most a year each"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.cx.push(
                    self.error(format!("`{text}` is not a duration"))
                        .label(e.to_string())
                        .help("use a number with a unit: \"500ms\", \"30s\", \"5m\", \"1h 30m\""),
                );
                None
            }
        }
    }

    /// A duration that must be longer than zero: timeouts and waits that zero would break.
    pub fn positive_duration(&self) -> Option<Duration> {
        let d = self.duration()?;
        if d.is_zero() {
            self.cx.push(
                self.error("must be longer than zero")
                    .label("zero")
                    .help("for example: \"30s\""),
            );
            return None;
        }
        Some(d)
    }

    /// A string that must be one of a fixed set of choices.
    pub fn choice<T: Copy>(&self, choices: &[(&str, T)]) -> Option<T> {
        let text = self.str()?;
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let valid = quote_list(&names);
        let mut d = self
            .error(format!("`{text}` is not one of {valid}"))
            .label("unknown value");
        d = match suggest(text, names.iter().copied()) {
            Some(s) => d.help(format!("did you mean \"{s}\"?")),
            None => d.help(format!("use one of {valid}")),
        };
        self.cx.push(d);
        None
    }

    pub fn array(&self) -> Option<Vec<Field<'a, 'i>>> {
        match self.value.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .map(|v| Field::new(self.cx, v, self.path.clone()))
                    .collect(),
            ),
            _ => self.wrong_type("an array", ""),
        }
    }

    /// An array of strings, each with its own span.
    pub fn strings(&self, example: &str) -> Option<Vec<At<String>>> {
        let items = self.array()?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match item.value.get_ref() {
                DeValue::String(s) => out.push(At::new(s.to_string(), item.span())),
                other => {
                    ok = false;
                    let found = type_name(other);
                    self.cx.push(
                        Diagnostic::error(
                            &self.path,
                            item.span(),
                            format!("expected an array of strings, found {found} in it"),
                        )
                        .label(format!("this is {found}"))
                        .help(format!("for example: {example}")),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A command as an argv array: program first, never handed to a shell.
    pub fn argv(&self) -> Option<Vec<String>> {
        let example = "[\"./scripts/check.sh\", \"--fast\"]";
        if let DeValue::String(s) = self.value.get_ref() {
            self.cx.push(
                self.error("expected a command as an array of arguments, found a string")
                    .label("commands are never run through a shell")
                    .help(format!(
                        "split it into program and arguments: {}",
                        argv_hint(s)
                    )),
            );
            return None;
        }
        let argv = self.strings(example)?;
        if argv.is_empty() {
            self.cx.push(
                self.error("the command is empty")
                    .label("needs at least the program")
                    .help(format!("for example: {example}")),
            );
            return None;
        }
        if argv[0].value.is_empty() {
            self.cx.push(
                Diagnostic::error(
                    &self.path,
                    argv[0].span.clone(),
                    "the program name is empty",
                )
                .label("empty program"),
            );
            return None;
        }
        Some(argv.into_iter().map(|a| a.value).collect())
    }

    /// The value as a table, or `None` without a word: for looking into a table another
    /// reader reports on.
    pub fn peek_table(&self) -> Option<Table<'a, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(_) => self.table(),
            _ => None,
        }
    }

    /// The value as a string, or `None` without a word.
    pub fn peek_str(&self) -> Option<&'a str> {
        self.value.get_ref().as_str()
    }

    pub fn table(&self) -> Option<Table<'a, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(table) => Some(Table {
                cx: self.cx,
                table,
                span: self.span(),
                path: self.path.clone(),
                used: RefCell::new(Vec::new()),
            }),
            _ => self.wrong_type("a table", ""),
        }
    }
}

fn argv_hint(command: &str) -> String {
    let words: Vec<String> = command
        .split_whitespace()
        .map(|w| format!("\"{w}\""))
        .collect();
    format!("[{}]", words.join(", "))
}

pub fn quote_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The closest known name to a misspelled one, if any is close enough to be a likely typo.
pub fn suggest<'n>(wrong: &str, known: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    known
        .into_iter()
        .map(|name| (strsim::jaro_winkler(wrong, name), name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// A TOML table whose fields are read by name; whatever is left unread is an unknown field.
pub struct Table<'a, 'i> {
    cx: &'a Cx,
    table: &'a DeTable<'i>,
    span: Span,
    path: String,
    used: RefCell<Vec<&'a str>>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn root(cx: &'a Cx, table: &'a Spanned<DeTable<'i>>) -> Self {
        Table {
            cx,
            table: table.get_ref(),
            span: table.span(),
            path: String::new(),
            used: RefCell::new(Vec::new()),
        }
    }

    pub fn span(&self) -> Span {
        self.span.clone()
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn push(&self, diagnostic: Diagnostic) {
        self.cx.push(diagnostic);
    }

    /// A field without marking it as known: for looking at a value before deciding whether
    /// it belongs here.
    pub fn peek(&self, key: &str) -> Option<Field<'a, 'i>> {
        let (_, value) = self.table.iter().find(|(k, _)| k.get_ref() == key)?;
        Some(Field::new(self.cx, value, join(&self.path, key)))
    }

    /// A string field's value without marking the field as known (for messages about others).
    pub fn peek_str(&self, key: &str) -> Option<&'a str> {
        let (_, value) = self.table.iter().find(|(k, _)| k.get_ref() == key)?;
        value.get_ref().as_str()
    }

    /// The field named `key`, if present. Asking for a field marks it as known.
    pub fn field(&self, key: &'static str) -> Option<Field<'a, 'i>> {
        self.used.borrow_mut().push(key);
        let (_, value) = self.table.iter().find(|(k, _)| k.get_ref() == key)?;
        Some(Field::new(self.cx, value, join(&self.path, key)))
    }

    /// Like `field`, but a missing field is an error.
    pub fn required(&self, key: &'static str, example: &str) -> Option<Field<'a, 'i>> {
        let field = self.field(key);
        if field.is_none() {
            let at = if self.path.is_empty() {
                "the plan".to_string()
            } else {
                format!("`{}`", self.path)
            };
            self.cx.push(
                Diagnostic::error(
                    join(&self.path, key),
                    self.header_span(),
                    format!("missing field `{key}`"),
                )
                .label(format!("{at} needs `{key}`"))
                .help(format!("add it, for example: {example}")),
            );
        }
        field
    }

    /// Where to point when a table lacks a field: its header (`[backend]`), or the first line of
    /// an inline table; the start of the file for the top level.
    fn header_span(&self) -> Span {
        let text = self.cx.source(&self.span);
        let first_line = text.find('\n').unwrap_or(text.len());
        if first_line > 0 {
            return self.span.start..self.span.start + first_line;
        }
        // The top level has an empty span: point at the file's first character, if any.
        let first_char = self.cx.text_from(self.span.start).chars().next();
        self.span.start..self.span.start + first_char.map_or(0, char::len_utf8)
    }

    /// Every `(key, value)` pair, for tables whose keys are names (e.g. `[sources.NAME]`).
    pub fn entries(&self) -> Vec<(At<String>, Field<'a, 'i>)> {
        self.table
            .iter()
            .map(|(k, value)| {
                self.used.borrow_mut().push(k.get_ref().as_ref());
                let key = k.get_ref().to_string();
                let field = Field::new(self.cx, value, join(&self.path, &key));
                (At::new(key, k.span()), field)
            })
            .collect()
    }

    /// Reports every field nobody asked for. `owner` names another context where an unknown
    /// key would be valid (e.g. a field of another backend type), for a more helpful message.
    pub fn finish(&self, owner: impl Fn(&str) -> Option<String>) {
        let used = self.used.borrow();
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if used.contains(&name) {
                continue;
            }
            let path = join(&self.path, name);
            let mut d = Diagnostic::error(path, key.span(), format!("unknown field `{name}`"));
            if let Some(elsewhere) = owner(name) {
                d = d.label("not valid here").help(elsewhere);
            } else if let Some(s) = suggest(name, used.iter().copied()) {
                d = d
                    .label("unknown field")
                    .help(format!("did you mean `{s}`?"));
            } else {
                let mut known: Vec<&str> = used.to_vec();
                known.sort_unstable();
                known.dedup();
                let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                d = d
                    .label("unknown field")
                    .help(format!("valid fields here: {}", list.join(", ")));
            }
            self.cx.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["interval", "bake", "max_hold"];
        assert_eq!(suggest("intervall", known), Some("interval"));
        assert_eq!(suggest("bak", known), Some("bake"));
        assert_eq!(suggest("zzz", known), None);
    }

    #[test]
    fn quotes_lists_for_prose() {
        assert_eq!(quote_list(&["a"]), "\"a\"");
        assert_eq!(quote_list(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }
}
