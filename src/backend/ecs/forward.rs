//! The forward action of an ALB listener or rule, and the weights rollout sets on it: pure
//! functions, tested without any API.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use serde::{Deserialize, Serialize};

use crate::plan::Weight;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupWeight {
    pub target_group_arn: String,
    pub weight: i32,
}

/// ALB weights (stable, canary) for a stage weight. ALB takes integers 0..=999 per target
/// group: whole percents are written as such (75/25), tenths in thousandths (999/1), anything
/// finer as the closest ratio that fits. Both sides keep some traffic whenever the stage weight
/// is strictly between 0 and 100, so the finest split is 999 to 1 (about 0.1%).
pub fn alb_weights(weight: Weight) -> (i32, i32) {
    let p = weight.percent();
    if p.fract() == 0.0 {
        let c = p as i32;
        return (100 - c, c);
    }
    let tenths = p * 10.0;
    if (tenths - tenths.round()).abs() < 1e-9 {
        let c = tenths.round() as i32;
        return (1000 - c, c);
    }
    let share = p / 100.0;
    let mut best = (999, 1);
    let mut best_error = f64::INFINITY;
    for c in 1..=999 {
        let s = ((c as f64 * (1.0 - share) / share).round() as i32).clamp(1, 999);
        let error = (c as f64 / (c + s) as f64 - share).abs();
        if error < best_error - 1e-12 {
            best = (s, c);
            best_error = error;
        }
    }
    best
}

fn is_forward(action: &Action) -> bool {
    action.r#type() == Some(&ActionTypeEnum::Forward)
}

fn forward_index(actions: &[Action]) -> Result<usize, String> {
    actions
        .iter()
        .position(is_forward)
        .ok_or_else(|| "it has no forward action".to_string())
}

/// The forward action's target groups with their weights.
pub fn forward_weights(actions: &[Action]) -> Result<Vec<TargetGroupWeight>, String> {
    weights_of(&actions[forward_index(actions)?])
}

/// A forward action naming a single `TargetGroupArn` sends it everything.
fn weights_of(forward: &Action) -> Result<Vec<TargetGroupWeight>, String> {
    let tuples = forward
        .forward_config()
        .map(|f| f.target_groups())
        .unwrap_or_default();
    if tuples.is_empty() {
        return forward
            .target_group_arn()
            .map(|arn| {
                vec![TargetGroupWeight {
                    target_group_arn: arn.to_string(),
                    weight: 1,
                }]
            })
            .ok_or_else(|| "its forward action names no target group".to_string());
    }
    Ok(tuples
        .iter()
        .map(|t| TargetGroupWeight {
            target_group_arn: t.target_group_arn().unwrap_or_default().to_string(),
            // ALB's default weight for a target group listed without one.
            weight: t.weight().unwrap_or(1),
        })
        .collect())
}

fn weight_of(weights: &[TargetGroupWeight], arn: &str) -> Option<i32> {
    weights
        .iter()
        .find(|w| w.target_group_arn == arn)
        .map(|w| w.weight)
}

pub fn has_weights(actions: &[Action], stable: &str, canary: &str, (s, c): (i32, i32)) -> bool {
    let Ok(weights) = forward_weights(actions) else {
        return false;
    };
    weight_of(&weights, stable) == Some(s) && weight_of(&weights, canary).unwrap_or(0) == c
}

/// Whether the forward action already splits traffic as `(stable, canary)` would, whatever the
/// numbers: a lone stable target group already is "100/0". Other target groups do not count;
/// `set_forward_weights` refuses them unless they are at 0.
pub fn same_split(actions: &[Action], stable: &str, canary: &str, (s, c): (i32, i32)) -> bool {
    let Ok(weights) = forward_weights(actions) else {
        return false;
    };
    let of = |arn: &str| weight_of(&weights, arn).map_or(0, i64::from);
    let (read_s, read_c) = (of(stable), of(canary));
    let others_idle = weights
        .iter()
        .all(|w| w.target_group_arn == stable || w.target_group_arn == canary || w.weight == 0);
    others_idle
        && read_s + read_c > 0
        && read_c * i64::from(s + c) == i64::from(c) * (read_s + read_c)
}

/// The actions with the forward action's weights set to `(stable, canary)`. Everything else is
/// kept: the other actions, the forward action's order and stickiness, and target groups other
/// than the two, which must carry no traffic (their share would be neither version's).
pub fn set_forward_weights(
    actions: &[Action],
    stable: &str,
    canary: &str,
    (s, c): (i32, i32),
) -> Result<Vec<Action>, String> {
    let index = forward_index(actions)?;
    let current = weights_of(&actions[index])?;
    if !current.iter().any(|w| w.target_group_arn == stable) {
        return Err(format!(
            "its forward action does not send traffic to the stable target group {stable}"
        ));
    }
    if let Some(other) = current
        .iter()
        .find(|w| w.target_group_arn != stable && w.target_group_arn != canary && w.weight > 0)
    {
        return Err(format!(
            "its forward action also sends traffic to {} (weight {}), which is neither the stable nor the canary target group",
            other.target_group_arn, other.weight
        ));
    }
    let mut tuples: Vec<TargetGroupTuple> = current
        .iter()
        .map(|w| {
            let weight = if w.target_group_arn == stable {
                s
            } else if w.target_group_arn == canary {
                c
            } else {
                w.weight
            };
            TargetGroupTuple::builder()
                .target_group_arn(&w.target_group_arn)
                .weight(weight)
                .build()
        })
        .collect();
    if !current.iter().any(|w| w.target_group_arn == canary) {
        tuples.push(
            TargetGroupTuple::builder()
                .target_group_arn(canary)
                .weight(c)
                .build(),
        );
    }
    let mut updated = actions.to_vec();
    let forward = &mut updated[index];
    let stickiness = forward
        .forward_config()
        .and_then(|f| f.target_group_stickiness_config())
        .cloned();
    forward.forward_config = Some(
        ForwardActionConfig::builder()
            .set_target_groups(Some(tuples))
            .set_target_group_stickiness_config(stickiness)
            .build(),
    );
    // ALB refuses a TargetGroupArn next to a ForwardConfig of several target groups.
    forward.target_group_arn = None;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::{
        FixedResponseActionConfig, TargetGroupStickinessConfig,
    };

    const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1";
    const CANARY: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/canary/2";
    const OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/other/3";

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    #[test]
    fn alb_weights_are_readable_and_in_range() {
        assert_eq!(alb_weights(weight(0.0)), (100, 0));
        assert_eq!(alb_weights(weight(25.0)), (75, 25));
        assert_eq!(alb_weights(weight(100.0)), (0, 100));
        assert_eq!(alb_weights(weight(0.1)), (999, 1));
        assert_eq!(alb_weights(weight(99.9)), (1, 999));
        assert_eq!(alb_weights(weight(12.5)), (875, 125));
        assert_eq!(alb_weights(weight(0.01)), (999, 1));
        assert_eq!(alb_weights(weight(99.99)), (1, 999));
        assert_eq!(alb_weights(weight(0.05)), (999, 1));
        for p in [0.01, 0.05, 0.123, 33.333, 66.6666, 99.95, 99.99] {
            let (s, c) = alb_weights(weight(p));
            assert!(
                (0..=999).contains(&s) && (0..=999).contains(&c),
                "{p}: {s}/{c}"
            );
            assert!(c > 0, "{p}% must send the canary something");
            assert!(s > 0, "{p}% must leave stable something");
            let share = 100.0 * c as f64 / (s + c) as f64;
            assert!((share - p).abs() < 0.1, "{p}% became {share}% ({s}/{c})");
        }
    }

    fn tuple(arn: &str, weight: Option<i32>) -> TargetGroupTuple {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .set_weight(weight)
            .build()
    }

    fn forward(tuples: Vec<TargetGroupTuple>, sticky: bool) -> Action {
        let mut config = ForwardActionConfig::builder().set_target_groups(Some(tuples));
        if sticky {
            config = config.target_group_stickiness_config(
                TargetGroupStickinessConfig::builder()
                    .enabled(true)
                    .duration_seconds(300)
                    .build(),
            );
        }
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(config.build())
            .build()
    }

    fn auth_action() -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .order(1)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("403")
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_single_target_group_becomes_a_weighted_pair() {
        let actions = vec![
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(STABLE)
                .build(),
        ];
        let updated = set_forward_weights(&actions, STABLE, CANARY, (90, 10)).unwrap();
        assert_eq!(updated[0].target_group_arn(), None);
        assert_eq!(
            forward_weights(&updated).unwrap(),
            vec![
                TargetGroupWeight {
                    target_group_arn: STABLE.into(),
                    weight: 90
                },
                TargetGroupWeight {
                    target_group_arn: CANARY.into(),
                    weight: 10
                },
            ]
        );
        assert!(has_weights(&updated, STABLE, CANARY, (90, 10)));
        assert!(!has_weights(&updated, STABLE, CANARY, (80, 20)));
        // Before: everything on stable, nothing on the (absent) canary.
        assert!(has_weights(&actions, STABLE, CANARY, (1, 0)));
        assert!(same_split(&actions, STABLE, CANARY, (100, 0)));
        assert!(!same_split(&actions, STABLE, CANARY, (90, 10)));
        assert!(same_split(&updated, STABLE, CANARY, (9, 1)));
        assert!(!same_split(&updated, STABLE, CANARY, (1, 0)));
        let third = vec![forward(
            vec![tuple(STABLE, Some(1)), tuple(OTHER, Some(1))],
            false,
        )];
        assert!(!same_split(&third, STABLE, CANARY, (100, 0)));
    }

    #[test]
    fn everything_else_on_the_actions_is_kept() {
        let actions = vec![
            auth_action(),
            forward(
                vec![
                    tuple(CANARY, Some(0)),
                    tuple(STABLE, Some(100)),
                    tuple(OTHER, Some(0)),
                ],
                true,
            ),
        ];
        let updated = set_forward_weights(&actions, STABLE, CANARY, (50, 50)).unwrap();
        assert_eq!(updated[0], actions[0]);
        let f = &updated[1];
        assert_eq!(f.order(), Some(2));
        let config = f.forward_config().unwrap();
        assert_eq!(
            config.target_group_stickiness_config(),
            actions[1]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config()
        );
        // Same order as before; the idle third target group stays idle.
        assert_eq!(
            config.target_groups(),
            &[
                tuple(CANARY, Some(50)),
                tuple(STABLE, Some(50)),
                tuple(OTHER, Some(0))
            ]
        );
    }

    #[test]
    fn actions_that_cannot_be_weighted_are_refused() {
        let no_stable = vec![forward(vec![tuple(OTHER, Some(1))], false)];
        let err = set_forward_weights(&no_stable, STABLE, CANARY, (100, 0)).unwrap_err();
        assert!(
            err.contains("does not send traffic to the stable target group"),
            "{err}"
        );

        let third = vec![forward(
            vec![tuple(STABLE, Some(50)), tuple(OTHER, Some(50))],
            false,
        )];
        let err = set_forward_weights(&third, STABLE, CANARY, (100, 0)).unwrap_err();
        assert!(err.contains(OTHER) && err.contains("weight 50"), "{err}");

        let err = set_forward_weights(&[auth_action()], STABLE, CANARY, (100, 0)).unwrap_err();
        assert_eq!(err, "it has no forward action");
    }

    #[test]
    fn a_target_group_without_a_weight_counts_as_one() {
        let actions = vec![forward(vec![tuple(STABLE, None)], false)];
        assert_eq!(forward_weights(&actions).unwrap()[0].weight, 1);
    }
}
