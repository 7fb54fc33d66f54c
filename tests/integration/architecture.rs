//! Dependencies run one way: plan <- exec <- metrics, backend <- event <- engine <- report <- notify,
//! state <- cli. A module that imports one above it fails here, naming the file and the import.

use std::collections::BTreeMap;
use std::path::Path;

/// What each module of the library may use of the others (`crate::NAME`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("exit", &[]),
    ("plan", &[]),
    ("approval", &[]),
    ("exec", &["plan"]),
    ("metrics", &["plan", "exec"]),
    ("backend", &["plan", "exec"]),
    ("event", &["plan", "exec", "exit"]),
    (
        "engine",
        &[
            "plan", "exec", "metrics", "backend", "event", "approval", "exit",
        ],
    ),
    ("report", &["plan", "exec", "event", "exit"]),
    ("notify", &["plan", "exec", "event", "exit", "report"]),
    ("state", &["plan", "exec", "event", "approval", "exit"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` a file mentions, outside comments.
fn crate_imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
            rest = &rest[at + 7..];
        }
    }
    found
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "{}: module `{module}` has no place in the dependency order above",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_imports(&text) {
            if used != module && !may.contains(&used.as_str()) {
                problems.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not below it",
                    relative.display()
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
