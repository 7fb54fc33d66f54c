//! Where nginx includes the location file, read from its configuration dump (`nginx -T`): the
//! statements of each file as nginx tokenizes them, and the location block around the
//! `include` of the location file.
//!
//! The mirror's own location must be nested in that location: a mirror subrequest is matched
//! against the server's locations like any request, so its URI has to lead into the user's
//! location, and nginx allows a nested prefix location only under its parent's prefix (and
//! none in an exact or a named location). Segments need no more than being in a location.

use std::path::{Path, PathBuf};

use super::loaded::DumpedFile;

/// One statement: its words (the directive and its arguments), and its block if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub words: Vec<String>,
    pub block: Option<Vec<Statement>>,
}

impl Statement {
    fn name(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
}

/// The statements of one file, as nginx reads them: words split by whitespace, `#` comments,
/// single or double quotes with backslash escapes, `;` ending a statement and `{ }` a block
/// (a `{` right after `$` belongs to a variable, `${name}`). `Err` for unbalanced braces or
/// an unterminated quote, which `nginx -T` would not have printed.
pub fn parse(text: &str) -> Result<Vec<Statement>, String> {
    let tokens = tokenize(text)?;
    let mut stack: Vec<(Vec<String>, Vec<Statement>)> = vec![(Vec::new(), Vec::new())];
    let mut words = Vec::new();
    for token in tokens {
        match token {
            Token::Word(word) => words.push(word),
            Token::End => {
                let top = &mut stack.last_mut().expect("the file level").1;
                top.push(Statement {
                    words: std::mem::take(&mut words),
                    block: None,
                });
            }
            Token::Open => stack.push((std::mem::take(&mut words), Vec::new())),
            Token::Close => {
                if stack.len() == 1 {
                    return Err("a `}` closes no block".into());
                }
                let (head, block) = stack.pop().expect("checked above");
                stack.last_mut().expect("the file level").1.push(Statement {
                    words: head,
                    block: Some(block),
                });
            }
        }
    }
    match stack.pop() {
        Some((_, statements)) if stack.is_empty() && words.is_empty() => Ok(statements),
        _ => Err("a block is not closed".into()),
    }
}

enum Token {
    Word(String),
    End,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            _ if c.is_whitespace() => {
                chars.next();
            }
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            ';' | '{' | '}' => {
                chars.next();
                tokens.push(match c {
                    ';' => Token::End,
                    '{' => Token::Open,
                    _ => Token::Close,
                });
            }
            '"' | '\'' => {
                chars.next();
                tokens.push(Token::Word(quoted(&mut chars, c)?));
            }
            _ => tokens.push(Token::Word(word(&mut chars))),
        }
    }
    Ok(tokens)
}

fn quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
) -> Result<String, String> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\'' | '\\')) => out.push(e),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            _ if c == quote => return Ok(out),
            _ => out.push(c),
        }
    }
    Err(format!("a {quote}-quoted string is not closed"))
}

fn word(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut out = String::new();
    let mut in_variable_braces = false;
    while let Some(&c) = chars.peek() {
        let ends = c.is_whitespace() || c == ';' || (c == '}' && !in_variable_braces);
        if ends || (c == '{' && !out.ends_with('$')) {
            break;
        }
        in_variable_braces = (c == '{') || (in_variable_braces && c != '}');
        out.push(c);
        chars.next();
    }
    out
}

/// The kind of the location block that includes the location file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enclosing {
    /// `location /path/ { }` or `location ^~ /path/ { }`: a mirror location can nest under it.
    Prefix(String),
    /// `location = /x`, a regular expression, or a named location: no nested prefix location.
    Other(String),
}

/// Where nginx includes the location file, as far as rollout needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub location: Enclosing,
    /// The scheme of the location's own `proxy_pass SCHEME://UPSTREAM;`.
    pub scheme: String,
}

/// Finds the one `include` of `location_file` (as nginx names it, `nginx_path`) in the dump,
/// and what encloses it. The message of an `Err` says what to change, in nginx's terms.
pub fn placement(
    files: &[DumpedFile],
    nginx_path: &Path,
    upstream: &str,
) -> Result<Placement, String> {
    let conf_dir = files
        .first()
        .and_then(|f| f.path.parent())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut found: Vec<(PathBuf, Vec<Statement>)> = Vec::new();
    for file in files {
        let statements = parse(&file.text).map_err(|e| {
            format!(
                "cannot read {} from nginx's configuration: {e}",
                file.path.display()
            )
        })?;
        collect_includes(
            &statements,
            &mut Vec::new(),
            &conf_dir,
            nginx_path,
            &file.path,
            &mut found,
        );
    }
    let shown = nginx_path.display();
    let (file, parents) = match found.as_slice() {
        [one] => one,
        [] => {
            return Err(format!(
                "nginx reads {shown}, but no `include` names it inside a location; add `include {shown};` inside the location that proxies to http://{upstream}"
            ));
        }
        several => {
            let places: Vec<String> = several
                .iter()
                .map(|(f, _)| f.display().to_string())
                .collect();
            return Err(format!(
                "nginx includes {shown} {} times (in {}); include it once, inside the location that proxies to http://{upstream}",
                several.len(),
                places.join(", ")
            ));
        }
    };
    let Some(location) = parents.last().filter(|p| p.name() == "location") else {
        let what = parents.last().map_or("at the top level".to_string(), |p| {
            format!("inside `{} {{ }}`", p.words.join(" "))
        });
        return Err(format!(
            "{} includes {shown} {what}; include it directly inside the location that proxies to http://{upstream}",
            file.display()
        ));
    };
    let scheme = proxied_scheme(location, upstream).ok_or_else(|| {
        format!(
            "the location that includes {shown} (`{}` in {}) does not `proxy_pass http://{upstream};`; include it in the location that does",
            location.words.join(" "),
            file.display()
        )
    })?;
    Ok(Placement {
        location: enclosing(&location.words[1..]),
        scheme,
    })
}

fn collect_includes(
    statements: &[Statement],
    parents: &mut Vec<Statement>,
    conf_dir: &Path,
    target: &Path,
    file: &Path,
    found: &mut Vec<(PathBuf, Vec<Statement>)>,
) {
    for statement in statements {
        if statement.name() == "include"
            && let Some(arg) = statement.words.get(1)
            && includes(conf_dir, arg, target)
        {
            found.push((file.to_path_buf(), parents.clone()));
        }
        if let Some(block) = &statement.block {
            parents.push(Statement {
                words: statement.words.clone(),
                block: Some(block.clone()),
            });
            collect_includes(block, parents, conf_dir, target, file, found);
            parents.pop();
        }
    }
}

/// Whether `include ARG` reads `target`: relative paths are nginx's, from the directory of its
/// main configuration file; `*` and `?` are glob patterns.
fn includes(conf_dir: &Path, arg: &str, target: &Path) -> bool {
    let path = conf_dir.join(arg);
    let pattern = path.to_string_lossy();
    if pattern.contains(['*', '?']) {
        return glob_match(pattern.as_bytes(), target.to_string_lossy().as_bytes());
    }
    path == target
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], text)
                || (!text.is_empty() && text[0] != b'/' && glob_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(&t)) => t != b'/' && glob_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) => p == t && glob_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// The scheme of the block's own `proxy_pass SCHEME://UPSTREAM;`, if it has one.
fn proxied_scheme(location: &Statement, upstream: &str) -> Option<String> {
    location.block.as_ref()?.iter().find_map(|s| {
        let [name, target] = s.words.as_slice() else {
            return None;
        };
        let (scheme, host) = target.split_once("://")?;
        (name == "proxy_pass" && host == upstream && matches!(scheme, "http" | "https"))
            .then(|| scheme.to_string())
    })
}

/// `location [MODIFIER] URI`, the modifier written apart or glued to the URI.
fn enclosing(args: &[String]) -> Enclosing {
    let written = args.join(" ");
    match args {
        [modifier, uri] if modifier == "^~" => Enclosing::Prefix(uri.clone()),
        [uri] if uri.starts_with('/') => Enclosing::Prefix(uri.clone()),
        [uri] if uri.starts_with("^~/") => Enclosing::Prefix(uri[2..].to_string()),
        _ => Enclosing::Other(format!("location {written}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(files: &[(&str, &str)]) -> Vec<DumpedFile> {
        files
            .iter()
            .map(|(path, text)| DumpedFile {
                path: PathBuf::from(path),
                text: text.to_string(),
            })
            .collect()
    }

    #[test]
    fn reads_statements_blocks_quotes_comments_and_variables() {
        let text = "http { # a comment; with { braces }\n  map $http_x ${v}_y { \"a;b\" 1; '~^x\\'y$' 2; }\n  server { listen 80; }\n}\n";
        let statements = parse(text).unwrap();
        assert_eq!(statements.len(), 1);
        let http = statements[0].block.as_ref().unwrap();
        assert_eq!(http[0].words, ["map", "$http_x", "${v}_y"]);
        let map = http[0].block.as_ref().unwrap();
        assert_eq!(map[0].words, ["a;b", "1"]);
        assert_eq!(map[1].words, ["~^x'y$", "2"]);
        assert_eq!(http[1].words, ["server"]);
        assert!(parse("http {").is_err());
        assert!(parse("}").is_err());
        assert!(parse("a \"b;").is_err());
    }

    const MAIN: &str = "http {\n    include conf.d/*.conf;\n    server {\n        location /api/ {\n            include /etc/nginx/shop-location.inc;\n            proxy_pass http://shop;\n        }\n    }\n}\n";

    #[test]
    fn finds_the_prefix_location_that_includes_the_file() {
        let files = dump(&[
            ("/etc/nginx/nginx.conf", MAIN),
            ("/etc/nginx/shop-location.inc", ""),
        ]);
        let found = placement(&files, Path::new("/etc/nginx/shop-location.inc"), "shop").unwrap();
        assert_eq!(found.location, Enclosing::Prefix("/api/".into()));
        assert_eq!(found.scheme, "http");
        // A relative include is nginx's, from its configuration's directory; globs match.
        let relative = MAIN.replace("/etc/nginx/shop-location.inc", "snippets/*-location.inc");
        let files = dump(&[("/etc/nginx/nginx.conf", &relative)]);
        let found = placement(
            &files,
            Path::new("/etc/nginx/snippets/shop-location.inc"),
            "shop",
        );
        assert_eq!(found.unwrap().location, Enclosing::Prefix("/api/".into()));
    }

    #[test]
    fn says_what_is_wrong_with_where_the_file_is_included() {
        let target = Path::new("/etc/nginx/shop-location.inc");
        let at = |text: &str| placement(&dump(&[("/etc/nginx/nginx.conf", text)]), target, "shop");
        assert_eq!(
            at("http { server { location / { proxy_pass http://shop; } } }").unwrap_err(),
            "nginx reads /etc/nginx/shop-location.inc, but no `include` names it inside a location; add `include /etc/nginx/shop-location.inc;` inside the location that proxies to http://shop"
        );
        assert_eq!(
            at("http { include /etc/nginx/shop-location.inc; }").unwrap_err(),
            "/etc/nginx/nginx.conf includes /etc/nginx/shop-location.inc inside `http { }`; include it directly inside the location that proxies to http://shop"
        );
        assert_eq!(
            at("http { server { location / { include /etc/nginx/shop-location.inc; proxy_pass http://other; } } }").unwrap_err(),
            "the location that includes /etc/nginx/shop-location.inc (`location /` in /etc/nginx/nginx.conf) does not `proxy_pass http://shop;`; include it in the location that does"
        );
        let twice = "http { server { location / { include /etc/nginx/shop-location.inc; proxy_pass http://shop; } location /b/ { include /etc/nginx/shop-location.inc; proxy_pass http://shop; } } }";
        assert!(
            at(twice)
                .unwrap_err()
                .starts_with("nginx includes /etc/nginx/shop-location.inc 2 times")
        );
        let exact = at("http { server { location = /x { include /etc/nginx/shop-location.inc; proxy_pass https://shop; } } }").unwrap();
        assert_eq!(exact.location, Enclosing::Other("location = /x".into()));
        assert_eq!(exact.scheme, "https");
        let glued = at("http { server { location ^~/y/ { include /etc/nginx/shop-location.inc; proxy_pass http://shop; } } }").unwrap();
        assert_eq!(glued.location, Enclosing::Prefix("/y/".into()));
    }
}
