//! The series selectors in a PromQL expression (`http_requests_total{track="canary"}`), found
//! by a small scanner rather than a parser: enough to ask Prometheus which of them match no
//! series when a query answers an empty vector.

/// One vector selector: its text as written, and its metric name when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub text: String,
    pub name: Option<String>,
}

/// Words that are never metric names (besides `LABEL_LISTS`, which `word` looks at first).
const KEYWORDS: &[&str] = &[
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "inf",
    "nan",
];

/// Words after which a parenthesised list holds label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

pub fn selectors(query: &str) -> Vec<Selector> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_to(&chars, i, ']');
        } else if c == '{' {
            let end = skip_to(&chars, i, '}');
            out.push(Selector {
                text: chars[i..end].iter().collect(),
                name: None,
            });
            i = end;
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`, `1.5e3`): its letters are no name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            i = word(&chars, i, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// A word at `start`: a function, a keyword, or a selector's metric name.
fn word(chars: &[char], start: usize, out: &mut Vec<Selector>) -> usize {
    let mut end = start;
    while end < chars.len()
        && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '_' | ':'))
    {
        end += 1;
    }
    let name: String = chars[start..end].iter().collect();
    let mut next = end;
    while next < chars.len() && chars[next].is_whitespace() {
        next += 1;
    }
    let following = chars.get(next).copied();
    let lower = name.to_ascii_lowercase();
    if LABEL_LISTS.contains(&lower.as_str()) {
        return if following == Some('(') {
            skip_to(chars, next, ')')
        } else {
            end
        };
    }
    if following == Some('(') || KEYWORDS.contains(&lower.as_str()) {
        return end;
    }
    if following == Some('{') {
        let close = skip_to(chars, next, '}');
        out.push(Selector {
            text: format!("{name}{}", chars[next..close].iter().collect::<String>()),
            name: Some(name),
        });
        return close;
    }
    out.push(Selector {
        text: name.clone(),
        name: Some(name),
    });
    end
}

/// The index after the `close` that ends what opens at `open`, strings inside skipped.
fn skip_to(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(q: &str) -> Vec<String> {
        selectors(q).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn finds_every_selector_and_nothing_else() {
        let cases: &[(&str, &[&str])] = &[
            ("up", &["up"]),
            (
                r#"sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))"#,
                &[
                    r#"http_requests_total{track="canary",code=~"5.."}"#,
                    r#"http_requests_total{track="canary"}"#,
                ],
            ),
            (
                r#"histogram_quantile(0.99, sum by (le) (rate(latency_bucket{job="a"}[5m] offset 1h)))"#,
                &[r#"latency_bucket{job="a"}"#],
            ),
            (
                r#"max without (instance) (x) > bool on (job) group_left (team) y"#,
                &["x", "y"],
            ),
            (
                r#"{__name__=~"job:.*", a="}"}"#,
                &[r#"{__name__=~"job:.*", a="}"}"#],
            ),
            ("rate(x[5m:30s]) * 1e3 + Inf", &["x"]),
            (r#"label_replace(up, "a", "$1", "b", "(.*)")"#, &["up"]),
            ("job:requests:rate5m", &["job:requests:rate5m"]),
            ("vector(1)", &[]),
        ];
        for (query, expected) in cases {
            assert_eq!(texts(query), *expected, "{query}");
        }
        assert_eq!(selectors("a{b=\"c\"}")[0].name.as_deref(), Some("a"));
    }
}
