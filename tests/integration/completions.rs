//! The completion scripts in completions/ must match what the CLI generates today.

use std::path::Path;
use std::process::Command;

use crate::harness::rollout_bin;

fn generated(shell: &str) -> String {
    let output = Command::new(rollout_bin())
        .args(["completions", shell])
        .output()
        .expect("run rollout completions");
    assert!(
        output.status.success(),
        "rollout completions {shell} failed"
    );
    String::from_utf8(output.stdout).expect("completions are UTF-8")
}

#[test]
fn committed_completions_match_the_cli() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, file) in [
        ("bash", "rollout.bash"),
        ("zsh", "_rollout"),
        ("fish", "rollout.fish"),
    ] {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == generated(shell),
            "completions/{file} is out of date with the CLI; regenerate it with:\n  cargo run -q -- completions {shell} > completions/{file}"
        );
    }
}

#[test]
fn every_shell_is_supported() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        assert!(generated(shell).contains("rollout"), "{shell}");
    }
}

/// Exit codes are defined once (`rollout::exit::Exit`): the README, the docs and `--help` say
/// what it says.
#[test]
fn exit_codes_are_documented_as_defined() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = rollout::exit::Exit::markdown_table();
    for doc in ["README.md", "docs/plan.md", "docs/events.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        assert!(
            text.contains(&table),
            "{doc} must hold the exit code table exactly as rollout::exit::Exit defines it:\n{table}"
        );
    }
    let output = Command::new(rollout_bin()).arg("--help").output().unwrap();
    // clap wraps long lines to the terminal.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(&String::from_utf8(output.stdout).unwrap());
    assert!(
        help.contains(&words(&rollout::exit::Exit::help())),
        "{help}"
    );
}

/// The man pages in man/ must match what clap_mangen makes of the CLI today.
#[test]
fn committed_man_pages_match_the_cli() {
    let generated = tempfile::tempdir().unwrap();
    let output = Command::new(rollout_bin())
        .arg("man")
        .arg(generated.path())
        .output()
        .expect("run rollout man");
    assert!(output.status.success(), "rollout man failed");
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let regenerate = "regenerate them with:\n  rm -rf man && cargo run -q -- man man";
    assert_eq!(
        names(&committed),
        names(generated.path()),
        "man/ has other pages than the CLI; {regenerate}"
    );
    for page in names(generated.path()) {
        let want = std::fs::read(generated.path().join(&page)).unwrap();
        let have = std::fs::read(committed.join(&page)).unwrap_or_default();
        assert!(
            have == want,
            "man/{page} is out of date with the CLI; {regenerate}"
        );
    }
}
