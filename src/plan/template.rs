//! Strings with `${VAR}` references, resolved from the environment when a run starts.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A string such as `"Bearer ${PROM_TOKEN}"`. Its `Display` shows the template, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A malformed `${...}` reference, with its byte offset inside the string.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable `{0}` is not set")]
pub struct MissingVar(pub String);

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(TemplateError {
                    offset: offset + start,
                    len: rest.len() - start,
                    message: "`${` is never closed with `}`".to_string(),
                });
            };
            let name = &after[..end];
            if !is_var_name(name) {
                return Err(TemplateError {
                    offset: offset + start,
                    len: end + 3,
                    message: format!(
                        "`{name}` is not an environment variable name (letters, digits and `_`)"
                    ),
                });
            }
            pieces.push(Piece::Var(name.to_string()));
            let consumed = start + 2 + end + 1;
            rest = &rest[consumed..];
            offset += consumed;
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Substitutes every variable through `lookup` (the environment, in production).
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingVar> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(name) => {
                    out.push_str(&lookup(name).ok_or_else(|| MissingVar(name.clone()))?)
                }
            }
        }
        Ok(out)
    }

    pub fn resolve_env(&self) -> Result<String, MissingVar> {
        self.resolve(|name| std::env::var(name).ok())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => f.write_str(text)?,
                Piece::Var(name) => write!(f, "${{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn resolves_variables_and_keeps_text() {
        let t = Template::parse("Bearer ${TOKEN}!").unwrap();
        assert_eq!(t.resolve(env).unwrap(), "Bearer s3cret!");
        assert_eq!(t.to_string(), "Bearer ${TOKEN}!");
        assert_eq!(t.vars().collect::<Vec<_>>(), ["TOKEN"]);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let t = Template::parse("${NOPE}").unwrap();
        assert_eq!(t.resolve(env), Err(MissingVar("NOPE".into())));
    }

    #[test]
    fn malformed_references_point_at_themselves() {
        let e = Template::parse("http://x/${HOST").unwrap_err();
        assert_eq!((e.offset, e.len), (9, 6));
        let e = Template::parse("a ${1BAD} b").unwrap_err();
        assert_eq!((e.offset, e.len), (2, 7));
        assert!(e.message.contains("`1BAD`"));
    }

    #[test]
    fn plain_dollars_are_text() {
        let t = Template::parse("cost $5 {x}").unwrap();
        assert_eq!(t.resolve(env).unwrap(), "cost $5 {x}");
    }
}
