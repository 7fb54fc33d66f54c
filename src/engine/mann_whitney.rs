//! The Mann-Whitney U test (Wilcoxon rank-sum), as SciPy's `scipy.stats.mannwhitneyu` computes
//! it with `method="auto"` and `use_continuity=True`: the exact null distribution when one
//! sample has at most 8 values and there are no ties, otherwise the normal approximation with
//! the tie correction and a continuity correction. `tests/integration/scipy_cross_check.rs`
//! holds it to SciPy over thousands of generated pairs.
//!
//! Why not statrs 0.19's `mannwhitneyu`, which follows the same rules: its exact branch
//! enumerates every one of the C(n1 + n2, n1) arrangements (a plan with `min_points = 5` and 200
//! baseline points would never finish a measurement) and it checks comparability pairwise in
//! O(n²). Here ranks come from one sort, and the exact distribution from the coefficients of a
//! Gaussian binomial, in O(n1² · n2) integer steps.

/// What the test asks: is the first sample (the canary) stochastically greater than the
/// second, less, or different either way?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    Greater,
    Less,
    TwoSided,
}

/// How the p-value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Exact,
    Asymptotic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// U of the first sample: how many (x, y) pairs have x > y, ties counting one half.
    pub u: f64,
    /// NaN only when every value of both samples is the same, as in SciPy's two-sided test.
    pub p_value: f64,
    pub method: Method,
}

/// Runs the test. `None` when a sample is empty or holds a NaN (callers keep finite values).
pub fn test(x: &[f64], y: &[f64], alternative: Alternative) -> Option<Test> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (n1, n2) = (x.len(), y.len());
    let ranked = rank(x, y);
    let u1 = ranked.rank_sum_x - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;
    let ties = ranked.tie_sizes.iter().any(|&t| t > 1);
    let small = n1 <= 8 || n2 <= 8;
    if small && !ties {
        let (u, factor) = match alternative {
            Alternative::Greater => (u1, 1.0),
            Alternative::Less => (u2, 1.0),
            Alternative::TwoSided => (u1.max(u2), 2.0),
        };
        if let Some(sf) = exact_sf(u as u64, n1, n2) {
            return Some(Test {
                u: u1,
                p_value: (sf * factor).clamp(0.0, 1.0),
                method: Method::Exact,
            });
        }
    }
    let p = asymptotic_p(u1, n1, n2, &ranked.tie_sizes, alternative);
    Some(Test {
        u: u1,
        p_value: if p.is_nan() { p } else { p.clamp(0.0, 1.0) },
        method: Method::Asymptotic,
    })
}

struct Ranked {
    /// The sum of the first sample's ranks (1-based, ties given their average rank).
    rank_sum_x: f64,
    /// The size of every group of equal values.
    tie_sizes: Vec<u64>,
}

fn rank(x: &[f64], y: &[f64]) -> Ranked {
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_sizes = Vec::new();
    let mut start = 0;
    while start < all.len() {
        // -0.0 and 0.0 are the same value to the test, as they are to SciPy.
        let end = start
            + all[start..]
                .iter()
                .take_while(|v| v.0 == all[start].0)
                .count();
        let average = (start + 1 + end) as f64 / 2.0;
        let in_x = all[start..end].iter().filter(|v| v.1).count();
        rank_sum_x += average * in_x as f64;
        tie_sizes.push((end - start) as u64);
        start = end;
    }
    Ranked {
        rank_sum_x,
        tie_sizes,
    }
}

/// P(U >= u) under the null hypothesis, from the exact distribution; `None` when the counts
/// outgrow 128-bit integers (the normal approximation is then used, where SciPy would carry on
/// in floating point).
fn exact_sf(u: u64, n1: usize, n2: usize) -> Option<f64> {
    let (m, n) = (n1.min(n2) as u64, n1.max(n2) as u64);
    let mn = m * n;
    let u = u.min(mn);
    let complement = mn - u;
    // The distribution is symmetric: sum whichever tail is shorter.
    let upto = u.min(complement) as usize;
    let counts = arrangements(m, n, upto)?;
    let total = binomial(m + n, m)?;
    let sum = |k: usize| counts[..k].iter().try_fold(0i128, |a, &c| a.checked_add(c));
    let favourable = if u < complement {
        // P(U >= u) = 1 - P(U < u)
        total.checked_sub(sum(u as usize)?)?
    } else {
        // P(U >= u) = P(U <= mn - u)
        sum(complement as usize + 1)?
    };
    Some(favourable as f64 / total as f64)
}

/// How many arrangements of the two samples give U = 0, 1, ..., `upto`: the coefficients of
/// the Gaussian binomial [m + n choose m]_q, built as the product over i of
/// (1 - q^(n+i)) / (1 - q^i), each step exact in integers.
fn arrangements(m: u64, n: u64, upto: usize) -> Option<Vec<i128>> {
    let mut c = vec![0i128; upto + 1];
    c[0] = 1;
    for i in 1..=m {
        let grow = (n + i) as usize;
        for j in (grow..=upto).rev() {
            c[j] = c[j].checked_sub(c[j - grow])?;
        }
        let shrink = i as usize;
        for j in shrink..=upto {
            c[j] = c[j].checked_add(c[j - shrink])?;
        }
    }
    Some(c)
}

fn binomial(n: u64, k: u64) -> Option<i128> {
    (1..=k).try_fold(1i128, |acc, i| {
        acc.checked_mul(i128::from(n - k + i))
            .map(|v| v / i128::from(i))
    })
}

/// The normal approximation, corrected for ties and for continuity (towards the mean, so the
/// p-value only grows).
fn asymptotic_p(u1: f64, n1: usize, n2: usize, tie_sizes: &[u64], alternative: Alternative) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let mu = n1 * n2 / 2.0;
    let tie_term: f64 = tie_sizes
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let mut numerator = u1 - mu;
    let sign = match alternative {
        Alternative::Greater => 1.0,
        Alternative::Less => -1.0,
        Alternative::TwoSided if numerator > 0.0 => 1.0,
        Alternative::TwoSided if numerator < 0.0 => -1.0,
        Alternative::TwoSided => 0.0,
    };
    numerator -= 0.5 * sign;
    let z = numerator / s;
    match alternative {
        Alternative::Greater => normal_sf(z),
        Alternative::Less => normal_sf(-z),
        Alternative::TwoSided => 2.0 * normal_sf(z.abs()),
    }
}

/// P(Z > z) for a standard normal Z, accurate far into the tail.
fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The median, as NumPy's `median` gives it (the mean of the middle two of an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300) || (a - b).abs() < 1e-15
    }

    /// The worked example of SciPy's documentation (Shier 2004): values SciPy prints.
    #[test]
    fn matches_the_scipy_documentation_example() {
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let two = test(&males, &females, Alternative::TwoSided).unwrap();
        assert_eq!(two.u, 17.0);
        assert_eq!(two.method, Method::Exact);
        assert!(close(two.p_value, 0.1111111111111111), "{}", two.p_value);
        let less = test(&females, &males, Alternative::Less).unwrap();
        assert_eq!(less.u, 3.0);
        assert!(close(less.p_value, 0.05555555555555555), "{}", less.p_value);
    }

    #[test]
    fn the_exact_distribution_counts_every_arrangement() {
        // Sizes 2 and 3: the 10 arrangements give U = 0,1,2,2,3,3,4,4,5,6.
        assert_eq!(arrangements(2, 3, 6).unwrap(), vec![1, 1, 2, 2, 2, 1, 1]);
        assert_eq!(binomial(5, 2), Some(10));
        assert_eq!(binomial(1008, 8), Some(25_708_099_169_553_626_826));
        // One value against a thousand: P(U >= 1000) = 1/1001.
        let p = exact_sf(1000, 1, 1000).unwrap();
        assert!(close(p, 1.0 / 1001.0), "{p}");
    }

    #[test]
    fn ties_and_large_samples_use_the_normal_approximation() {
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let y: Vec<f64> = (10..30).map(f64::from).collect();
        let t = test(&x, &y, Alternative::Less).unwrap();
        assert_eq!(t.method, Method::Asymptotic);
        assert!(t.p_value < 0.01, "{}", t.p_value);
        let tied = test(&[1.0, 1.0], &[1.0, 2.0], Alternative::Greater).unwrap();
        assert_eq!(tied.method, Method::Asymptotic);
    }

    #[test]
    fn identical_samples_are_no_evidence() {
        let same = [3.0; 12];
        assert!(
            test(&same, &same, Alternative::TwoSided)
                .unwrap()
                .p_value
                .is_nan()
        );
        assert_eq!(
            test(&same, &same, Alternative::Greater).unwrap().p_value,
            1.0
        );
        assert!(test(&[], &same, Alternative::Greater).is_none());
        assert!(test(&[f64::NAN], &same, Alternative::Greater).is_none());
    }

    #[test]
    fn medians_follow_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
