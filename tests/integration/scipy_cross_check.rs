//! rollout's Mann-Whitney U test against SciPy's `scipy.stats.mannwhitneyu` (method "auto",
//! continuity correction on): the same U and p-value, and so the same decision, over thousands
//! of generated sample pairs: tiny samples (the exact distribution), ties (the corrected normal
//! approximation), lopsided sizes, shifted and identical distributions.

use std::io::Write;
use std::process::{Command, Stdio};

use rollout::engine::mann_whitney::{Alternative, test};

/// A small deterministic generator (xorshift64*): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Roughly normal: the sum of four uniforms.
    fn normalish(&mut self) -> f64 {
        (0..4)
            .map(|_| self.below(1_000_000) as f64 / 1e6)
            .sum::<f64>()
            - 2.0
    }
}

fn sample(rng: &mut Rng, n: usize, shift: f64, rounding: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let v = rng.normalish() + shift;
            if rounding > 0.0 {
                (v / rounding).round() * rounding
            } else {
                v
            }
        })
        .collect()
}

fn cases() -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    let sizes = [1, 2, 3, 5, 8, 9, 10, 20, 40, 200];
    for &n1 in &sizes {
        for &n2 in &sizes {
            for &shift in &[0.0, 0.3, 1.0, -0.8] {
                // Continuous values (no ties), coarse values (many ties), very coarse (few
                // distinct values).
                for &rounding in &[0.0, 0.25, 1.0] {
                    let x = sample(&mut rng, n1, shift, rounding);
                    let y = sample(&mut rng, n2, 0.0, rounding);
                    cases.push((x, y));
                }
            }
        }
    }
    // One side identical throughout, both identical, and a lone value against many.
    cases.push((vec![5.0; 12], vec![5.0; 15]));
    cases.push((vec![5.0; 12], (0..15).map(f64::from).collect()));
    cases.push((vec![2.5], (0..900).map(|i| f64::from(i) / 10.0).collect()));
    cases.push((
        (0..6).map(|i| f64::from(i) * 100.0).collect(),
        (0..300).map(f64::from).collect(),
    ));
    cases
}

fn scipy(cases: &[(Vec<f64>, Vec<f64>)]) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/mannwhitney_scipy.py"
    );
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(x, y)| serde_json::json!({ "x": x, "y": y }))
        .collect();
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the SciPy cross-check needs python3 (on Debian: apt-get install -y python3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the SciPy cross-check needs SciPy: python3 -m pip install scipy \
         (./scripts/test.sh installs it)\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script answers JSON")
}

#[test]
fn p_values_and_decisions_match_scipy() {
    let cases = cases();
    let answers = scipy(&cases);
    let version = answers["scipy"].as_str().unwrap_or("?");
    let mut compared = 0;
    let mut failures = Vec::new();
    for (i, (x, y)) in cases.iter().enumerate() {
        for (name, alternative) in [
            ("greater", Alternative::Greater),
            ("less", Alternative::Less),
            ("two-sided", Alternative::TwoSided),
        ] {
            let ours = test(x, y, alternative).unwrap();
            let theirs = &answers["results"][i][name];
            let u = theirs[0].as_f64().unwrap();
            if (ours.u - u).abs() > 1e-9 * u.abs().max(1.0) {
                failures.push(format!("case {i} {name}: U {} vs SciPy {u}", ours.u));
            }
            let Some(p) = theirs[1].as_f64() else {
                // SciPy's NaN: every value equal, two-sided (since SciPy 1.13; older ones say 1).
                if !ours.p_value.is_nan() {
                    failures.push(format!("case {i} {name}: p {} vs SciPy NaN", ours.p_value));
                }
                continue;
            };
            if ours.p_value.is_nan() {
                // Every value equal: SciPy before 1.13 says 1 where it now says NaN.
                assert_eq!(p, 1.0, "case {i} {name}");
                continue;
            }
            compared += 1;
            let close =
                (ours.p_value - p).abs() <= 1e-9 * p.max(1e-12) || (ours.p_value - p).abs() < 1e-14;
            if !close {
                failures.push(format!(
                    "case {i} {name} (n = {}, {}): p {} vs SciPy {p} ({:?})",
                    x.len(),
                    y.len(),
                    ours.p_value,
                    ours.method
                ));
            }
            for alpha in [0.01, 0.02, 0.05] {
                // An exact p-value can be the threshold itself (11 of 220 arrangements is
                // 0.05): ours is that ratio, SciPy's a float sum a hair either side of it.
                let at_threshold = (p - alpha).abs() <= 1e-9 * alpha;
                if !at_threshold && (ours.p_value < alpha) != (p < alpha) {
                    failures.push(format!("case {i} {name}: decision at {alpha} differs"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} p-values differ from SciPy {version}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 3_000, "only {compared} comparisons");
}
