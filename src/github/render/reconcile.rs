//! What a reconcile of the default branch's `channels.toml` says on GitHub: the
//! `bakery/reconcile` check run on the reconciled commit (what moved, what was revoked,
//! what was refused, what failed), and each channel's deployment and its status.
//! Versions and reasons come from the repository: they are quoted as code or made inert.

use std::fmt::Write;

use super::channels::{move_row, refusal_line, targets, version};
use super::{cell, code, short_sha};
use crate::registry::channel_plan::Move;
use crate::registry::reconcile::{refused_channel, Action, Reconcile};

/// The check run of a reconcile, on the default branch's commit.
pub const RECONCILE_CHECK: &str = "bakery/reconcile";

/// An action the cloud refused, with the error (already redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFailure {
    pub action: Action,
    pub error: String,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The title of [`RECONCILE_CHECK`].
pub fn reconcile_check_title(r: &Reconcile, failures: &[ActionFailure]) -> String {
    if !failures.is_empty() {
        return format!(
            "{} failed",
            plural(failures.len(), "cloud change", "cloud changes")
        );
    }
    if !r.plan.refusals.is_empty() {
        return format!(
            "refused: {}",
            plural(r.plan.refusals.len(), "reason", "reasons")
        );
    }
    if r.actions.is_empty() {
        return "channels in place: nothing to change".into();
    }
    let mut parts = vec![plural(r.plan.moves.len(), "channel move", "channel moves")];
    if !r.revocations.is_empty() {
        parts.push(plural(r.revocations.len(), "revocation", "revocations"));
    }
    parts.join(", ")
}

fn action_line(a: &Action) -> String {
    let (account, region) = a.target();
    let at = format!("{account}/{region}");
    match a {
        Action::Revoke {
            image_id, release, ..
        } => format!(
            "revoke {} ({}) in {at}",
            code(image_id),
            code(&release.to_string())
        ),
        Action::PutParameter { name, image_id, .. } => {
            format!("point {} at {} in {at}", code(name), code(image_id))
        }
        Action::Tag {
            channel, image_id, ..
        } => format!("tag {} into {} in {at}", code(image_id), code(channel)),
        Action::Untag {
            channel, image_id, ..
        } => format!("untag {} from {} in {at}", code(image_id), code(channel)),
        Action::DeleteParameter { name, .. } => format!("delete {} in {at}", code(name)),
    }
}

/// The summary of [`RECONCILE_CHECK`] for the commit `sha`.
pub fn reconcile_summary(sha: &str, r: &Reconcile, failures: &[ActionFailure]) -> String {
    let mut out = String::new();
    let sha = code(short_sha(sha));
    let _ = writeln!(out, "### bakery reconciled `channels.toml` at {sha}\n");
    if r.actions.is_empty() && r.plan.refusals.is_empty() {
        out.push_str("Every channel parameter and tag is in place: nothing changed.\n");
        return out;
    }
    if !r.plan.moves.is_empty() {
        out.push_str("| Channel | Recipe | From | To | Accounts and regions |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for m in &r.plan.moves {
            move_row(&mut out, m);
        }
        out.push('\n');
    }
    if !r.revocations.is_empty() {
        out.push_str(
            "Revoked (deprecated now, tagged `bakery:revoked`, out of every channel):\n\n",
        );
        for v in &r.revocations {
            let _ = writeln!(
                out,
                "- {}: {} in {}",
                code(&v.release.to_string()),
                cell(&v.reason),
                cell(&targets(&v.targets))
            );
        }
        out.push('\n');
    }
    if !r.plan.refusals.is_empty() {
        out.push_str("Refused, left as they were:\n\n");
        for x in &r.plan.refusals {
            let _ = writeln!(out, "- {}", refusal_line(x));
        }
        out.push('\n');
    }
    if !failures.is_empty() {
        out.push_str("Failed (the next reconcile tries again):\n\n");
        for f in failures {
            let _ = writeln!(out, "- {}: {}", action_line(&f.action), cell(&f.error));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} made in the cloud.",
        plural(
            r.actions.len() - failures.len(),
            "change was",
            "changes were"
        )
    );
    out
}

/// The description of a channel's deployment: what moved in it.
pub fn deployment_description(channel: &str, r: &Reconcile) -> String {
    let moves: Vec<&Move> = r
        .plan
        .moves
        .iter()
        .filter(|m| m.channel == channel)
        .collect();
    if moves.is_empty() {
        return format!("{channel}: nothing moved");
    }
    moves
        .iter()
        .map(|m| {
            format!(
                "{} {} -> {}",
                m.recipe,
                version(&m.from).trim_matches('`'),
                if m.revoked {
                    "(revoked)".to_string()
                } else {
                    version(&m.to).trim_matches('`').to_string()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The description of a channel's deployment status.
pub fn deployment_status_description(
    channel: &str,
    r: &Reconcile,
    failures: &[ActionFailure],
) -> String {
    let refused = r
        .plan
        .refusals
        .iter()
        .filter(|x| refused_channel(x) == channel)
        .count();
    let failed = failures
        .iter()
        .filter(|f| f.action.channel() == Some(channel))
        .count();
    match (refused, failed) {
        (0, 0) => format!("{channel} reconciled in every account and region"),
        (0, f) => format!("{} in {channel} failed", plural(f, "change", "changes")),
        (x, _) => format!("{channel}: {} refused", plural(x, "change", "changes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::channel_plan::{ChannelPlan, Refusal};
    use crate::registry::channels::Release;
    use crate::registry::reconcile::Revocation;

    fn w(a: &str, r: &str) -> (String, String) {
        (a.into(), r.into())
    }

    fn reconcile() -> Reconcile {
        let release = |v: &str| Release {
            recipe: "base-ubuntu".into(),
            version: v.into(),
        };
        Reconcile {
            plan: ChannelPlan {
                moves: vec![
                    Move {
                        channel: "production".into(),
                        recipe: "base-ubuntu".into(),
                        from: Some("release-0.1.0".into()),
                        to: Some("release-0.2.0".into()),
                        targets: vec![
                            w("111111111111", "eu-west-1"),
                            w("222222222222", "us-east-1"),
                        ],
                        revoked: false,
                    },
                    Move {
                        channel: "staging".into(),
                        recipe: "base-ubuntu".into(),
                        from: Some("release-0.0.9".into()),
                        to: None,
                        targets: vec![w("111111111111", "eu-west-1")],
                        revoked: true,
                    },
                ],
                refusals: vec![Refusal::NeverReleased {
                    channel: "canary".into(),
                    release: release("release-9.9.9"),
                }],
            },
            revocations: vec![Revocation {
                release: release("release-0.0.9"),
                reason: "CVE-2026-12345: openssl cc @acme/security <b>".into(),
                targets: vec![w("111111111111", "eu-west-1")],
            }],
            actions: vec![
                Action::Revoke {
                    target: w("111111111111", "eu-west-1"),
                    image_id: "ami-0009".into(),
                    release: release("release-0.0.9"),
                    reason: "CVE".into(),
                    version_parameter: "/bakery/acme/images/base-ubuntu/versions/release-0.0.9"
                        .into(),
                },
                Action::PutParameter {
                    target: w("222222222222", "us-east-1"),
                    channel: "production".into(),
                    recipe: "base-ubuntu".into(),
                    name: "/bakery/acme/images/base-ubuntu/channels/production".into(),
                    image_id: "ami-0200".into(),
                    overwrite: true,
                },
            ],
        }
    }

    #[test]
    fn a_reconcile_summary_snapshot() {
        let r = reconcile();
        let failures = vec![ActionFailure {
            action: r.actions[1].clone(),
            error: "AccessDenied: not allowed | really".into(),
        }];
        assert_eq!(
            reconcile_check_title(&r, &failures),
            "1 cloud change failed"
        );
        assert_eq!(reconcile_check_title(&r, &[]), "refused: 1 reason");
        let s = reconcile_summary("3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c", &r, &failures);
        assert!(!s.contains("@acme"), "a reason cannot mention anyone: {s}");
        assert!(!s.contains("<b>"), "{s}");
        insta::assert_snapshot!(s);
        assert_eq!(
            deployment_description("production", &r),
            "base-ubuntu release-0.1.0 -> release-0.2.0"
        );
        assert_eq!(
            deployment_description("staging", &r),
            "base-ubuntu release-0.0.9 -> (revoked)"
        );
        assert_eq!(
            deployment_status_description("production", &r, &failures),
            "1 change in production failed"
        );
        assert_eq!(
            deployment_status_description("canary", &r, &[]),
            "canary: 1 change refused"
        );
        assert_eq!(
            deployment_status_description("staging", &r, &[]),
            "staging reconciled in every account and region"
        );
    }

    #[test]
    fn a_reconcile_with_nothing_to_do_says_so() {
        let r = Reconcile::default();
        assert_eq!(
            reconcile_check_title(&r, &[]),
            "channels in place: nothing to change"
        );
        insta::assert_snapshot!(reconcile_summary(
            "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c",
            &r,
            &[]
        ));
        let mut moved = reconcile();
        moved.plan.refusals.clear();
        assert_eq!(
            reconcile_check_title(&moved, &[]),
            "2 channel moves, 1 revocation"
        );
    }
}
