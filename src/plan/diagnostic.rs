//! Problems found in a plan file, located precisely enough to draw a caret under them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// A byte range in the plan file's text.
pub type Span = Range<usize>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a plan: what is wrong (`message`), where (`path` and `span`), what was
/// found there (`label`, printed beside the caret) and what would be valid (`help`).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: String,
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            span,
            message: message.into(),
            label: String::new(),
            help: None,
        }
    }

    pub fn warning(path: impl Into<String>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, span, message)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A plan file's name and text, with what is needed to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte ranges never shown in a rendered diagnostic: literal secrets in the file.
    pub redacted: Vec<Span>,
}

/// A 1-based line and column (in characters), as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
            redacted: Vec::new(),
        }
    }

    pub fn position(&self, offset: usize) -> Position {
        let offset = self.floor_char_boundary(offset);
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    fn floor_char_boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// Renders diagnostics the way rustc and cargo do: a title, the location, the source line
    /// with a caret under the offending text, and a help line.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let shown = self.shown_text();
        let mut out = String::new();
        for diagnostic in diagnostics {
            out.push_str(&renderer.render(&[self.group(&shown, diagnostic)]));
            out.push_str("\n\n");
        }
        out
    }

    /// The text with every redacted character masked. Each is replaced by a character of the
    /// same UTF-8 length and display width, and line breaks are kept, so that every span, line
    /// and column stays where it was.
    fn shown_text(&self) -> String {
        let mut shown = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        let mut offset = 0;
        for span in self.redacted_spans() {
            shown.push_str(&rest[..span.start - offset]);
            shown.extend(self.text[span.clone()].chars().map(mask));
            rest = &self.text[span.end..];
            offset = span.end;
        }
        shown.push_str(rest);
        shown
    }

    /// The redacted spans in order, inside the text, on character boundaries, not overlapping.
    fn redacted_spans(&self) -> Vec<Span> {
        let mut spans: Vec<Span> = self.redacted.iter().map(|s| self.clamp(s)).collect();
        spans.sort_by_key(|s| s.start);
        let mut out: Vec<Span> = Vec::new();
        for span in spans {
            match out.last_mut() {
                Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
                _ => out.push(span),
            }
        }
        out
    }

    fn group<'a>(&'a self, shown: &'a str, d: &'a Diagnostic) -> Group<'a> {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let span = self.clamp(&d.span);
        let title = if d.path.is_empty() {
            d.message.clone()
        } else {
            format!("{}: {}", d.path, d.message)
        };
        // Only the lines the span touches go to the renderer: the cost of a diagnostic then
        // does not grow with the size of the file.
        let first = shown[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let last = shown[span.end..]
            .find('\n')
            .map_or(shown.len(), |i| span.end + i);
        let line = shown[..first].matches('\n').count() + 1;
        let snippet = Snippet::source(&shown[first..last])
            .line_start(line)
            .path(display_path(&self.path))
            .annotation(
                AnnotationKind::Primary
                    .span(span.start - first..span.end - first)
                    .label(d.label.as_str()),
            );
        let group = level.primary_title(title).element(snippet);
        match &d.help {
            Some(help) => group.element(Level::HELP.message(help.as_str())),
            None => group,
        }
    }

    /// Spans from the TOML parser can end past the text (at end of input); the renderer wants
    /// them inside it.
    fn clamp(&self, span: &Span) -> Span {
        let start = self.floor_char_boundary(span.start);
        let end = self.floor_char_boundary(span.end.max(start));
        start..end
    }
}

/// A stand-in for a secret character that takes the same room in bytes and on screen.
fn mask(c: char) -> char {
    use unicode_width::UnicodeWidthChar;
    let wide = c.width().unwrap_or(1) > 1;
    match (c, c.len_utf8(), wide) {
        ('\n' | '\r', _, _) => c,
        (_, 1, _) => '*',
        (_, 2, _) => '×',
        (_, 3, true) => '＊',
        (_, 3, false) => '•',
        (_, _, true) => '🔒',
        _ => '𝑥',
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// A diagnostic as `rollout validate --output json` prints it. Lines and columns are 1-based;
/// columns count characters.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub severity: Severity,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl JsonDiagnostic {
    /// A problem with the file as a whole, such as not being readable.
    pub fn whole_file(path: &Path, message: &str) -> Self {
        JsonDiagnostic {
            file: display_path(path),
            severity: Severity::Error,
            path: String::new(),
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
            message: message.to_string(),
            label: String::new(),
            help: None,
        }
    }
}

impl SourceFile {
    pub fn to_json(&self, d: &Diagnostic) -> JsonDiagnostic {
        let start = self.position(d.span.start);
        let end = self.position(d.span.end);
        JsonDiagnostic {
            file: display_path(&self.path),
            severity: d.severity,
            path: d.path.clone(),
            line: start.line,
            column: start.column,
            end_line: end.line,
            end_column: end.column,
            message: d.message.clone(),
            label: d.label.clone(),
            help: d.help.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let file = SourceFile::new("p.toml", "a = 1\nname = \"é x\"\n");
        assert_eq!(file.position(0), Position { line: 1, column: 1 });
        assert_eq!(file.position(6), Position { line: 2, column: 1 });
        // The column counts characters, not bytes: `é` is two bytes.
        assert_eq!(
            file.position(16),
            Position {
                line: 2,
                column: 10
            }
        );
        assert_eq!(file.position(999), Position { line: 3, column: 1 });
    }

    #[test]
    fn renders_a_caret_under_the_span() {
        let file = SourceFile::new("plan.toml", "name = \"Bad\"\n");
        let d = Diagnostic::error("name", 7..12, "is not a valid name")
            .label("found `Bad`")
            .help("use lowercase letters, digits and `-`");
        let expected = "\
error: name: is not a valid name
 --> plan.toml:1:8
  |
1 | name = \"Bad\"
  |        ^^^^^ found `Bad`
  |
  = help: use lowercase letters, digits and `-`

";
        assert_eq!(file.render(&[d], false), expected);
    }

    #[test]
    fn redacted_text_is_never_rendered() {
        let mut file = SourceFile::new(
            "plan.toml",
            "headers = { Authorization = \"Bearer hunter2\" }\n",
        );
        file.redacted.push(29..43);
        let d = Diagnostic::error("headers", 12..25, "something");
        let out = file.render(&[d], false);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("\"**************\""), "{out}");
    }
}
