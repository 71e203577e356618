//! The channels plan comment on a pull request that changes `channels.toml`: which image
//! moves from which version to which, in which accounts and regions, and what the change
//! is refused for. Versions and reasons come from the pull request: they are quoted as
//! code or made inert.

use std::fmt::Write;

use super::{cell, code, short_sha};
use crate::registry::channel_plan::{ChannelPlan, Move, Refusal, Where};

/// Identifies the channels plan comment, edited on every push to the pull request.
pub const CHANNELS_MARKER: &str = "<!-- bakery:channels -->";

/// The check run of a channels change: failed when the plan refuses it or the file has
/// problems, so branch protection can hold the merge.
pub const CHANNELS_CHECK: &str = "bakery/channels";

/// The title of [`CHANNELS_CHECK`].
pub fn channels_check_title(plan: &ChannelPlan, problems: usize) -> String {
    match (problems, plan.refusals.len()) {
        (0, 0) => format!(
            "{} channel move{} planned",
            plan.moves.len(),
            if plan.moves.len() == 1 { "" } else { "s" }
        ),
        (0, r) => format!("refused: {r} reason{}", if r == 1 { "" } else { "s" }),
        (p, r) => format!(
            "{p} problem{} in channels.toml, {r} refusal{}",
            if p == 1 { "" } else { "s" },
            if r == 1 { "" } else { "s" }
        ),
    }
}

pub(super) fn version(v: &Option<String>) -> String {
    v.as_deref().map(code).unwrap_or_else(|| "—".into())
}

pub(super) fn targets(t: &[Where]) -> String {
    let mut by_account: Vec<(String, Vec<&str>)> = vec![];
    for (account, region) in t {
        match by_account.iter_mut().find(|(a, _)| a == account) {
            Some((_, regions)) => regions.push(region),
            None => by_account.push((account.clone(), vec![region])),
        }
    }
    by_account
        .iter()
        .map(|(a, r)| format!("{a}: {}", r.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn move_row(out: &mut String, m: &Move) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} |",
        cell(&m.channel),
        code(&m.recipe),
        version(&m.from),
        if m.revoked {
            "— (revoked)".to_string()
        } else {
            version(&m.to)
        },
        cell(&targets(&m.targets))
    );
}

pub(super) fn refusal_line(r: &Refusal) -> String {
    match r {
        Refusal::NeverReleased { channel, release } => format!(
            "{}: {} was never released (or every image of it is gone)",
            code(channel),
            code(&release.to_string())
        ),
        Refusal::Revoked {
            channel,
            release,
            reason,
        } => format!(
            "{}: {} is revoked: {}",
            code(channel),
            code(&release.to_string()),
            cell(reason)
        ),
        Refusal::Missing {
            channel,
            release,
            targets: t,
        } => format!(
            "{}: {} has no image in {}, where the channel needs one",
            code(channel),
            code(&release.to_string()),
            cell(&targets(t))
        ),
        Refusal::Emptied { channel } => format!(
            "{}: the revocation would leave the channel empty; point it at another release",
            code(channel)
        ),
    }
}

/// The comment for the pull request's head `head_sha`.
pub fn channels_plan_comment(head_sha: &str, plan: &ChannelPlan) -> String {
    let mut out = format!("{CHANNELS_MARKER}\n");
    let sha = code(short_sha(head_sha));
    if !plan.refusals.is_empty() {
        let _ = writeln!(
            out,
            "### :x: bakery channels plan at {sha}: refused\n\nMerging this would not reconcile:\n"
        );
        for r in &plan.refusals {
            let _ = writeln!(out, "- {}", refusal_line(r));
        }
        out.push('\n');
    }
    if plan.moves.is_empty() {
        if plan.refusals.is_empty() {
            let _ = writeln!(
                out,
                "### bakery channels plan at {sha}\n\nNo channel moves."
            );
        }
        return out.trim_end().to_string() + "\n";
    }
    if plan.refusals.is_empty() {
        let _ = writeln!(
            out,
            "### bakery channels plan at {sha}: {} move{}\n",
            plan.moves.len(),
            if plan.moves.len() == 1 { "" } else { "s" }
        );
    } else {
        out.push_str("What would move otherwise:\n\n");
    }
    out.push_str("| Channel | Recipe | From | To | Accounts and regions |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for m in &plan.moves {
        move_row(&mut out, m);
    }
    out.push_str("\nNothing moves while this pull request is open.\n");
    out.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::channels::Release;

    fn w(a: &str, r: &str) -> Where {
        (a.into(), r.into())
    }

    #[test]
    fn a_clean_channels_plan_snapshot() {
        let plan = ChannelPlan {
            moves: vec![
                Move {
                    channel: "production".into(),
                    recipe: "base-ubuntu".into(),
                    from: Some("release-0.1.0".into()),
                    to: Some("release-0.2.0".into()),
                    targets: vec![
                        w("111111111111", "eu-west-1"),
                        w("111111111111", "us-east-1"),
                        w("222222222222", "us-east-1"),
                    ],
                    revoked: false,
                },
                Move {
                    channel: "staging".into(),
                    recipe: "docker-host".into(),
                    from: None,
                    to: Some("release-0.2.0".into()),
                    targets: vec![w("111111111111", "us-east-1")],
                    revoked: false,
                },
            ],
            refusals: vec![],
        };
        let c = channels_plan_comment("3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c", &plan);
        assert!(c.starts_with(CHANNELS_MARKER));
        insta::assert_snapshot!(c);
    }

    #[test]
    fn a_refused_channels_plan_quotes_what_the_pull_request_wrote() {
        let release = |v: &str| Release {
            recipe: "base-ubuntu".into(),
            version: v.into(),
        };
        let plan = ChannelPlan {
            moves: vec![Move {
                channel: "production".into(),
                recipe: "base-ubuntu".into(),
                from: Some("release-0.1.0".into()),
                to: None,
                targets: vec![w("111111111111", "us-east-1")],
                revoked: true,
            }],
            refusals: vec![
                Refusal::NeverReleased {
                    channel: "staging".into(),
                    release: release("release-9`9"),
                },
                Refusal::Revoked {
                    channel: "canary".into(),
                    release: release("release-0.2.0"),
                    reason: "CVE-2026-1 cc @acme/security <b>".into(),
                },
                Refusal::Missing {
                    channel: "production".into(),
                    release: release("release-0.3.0"),
                    targets: vec![w("222222222222", "us-east-1")],
                },
                Refusal::Emptied {
                    channel: "production".into(),
                },
            ],
        };
        assert_eq!(channels_check_title(&plan, 0), "refused: 4 reasons");
        assert_eq!(
            channels_check_title(&plan, 1),
            "1 problem in channels.toml, 4 refusals"
        );
        assert_eq!(
            channels_check_title(&ChannelPlan::default(), 0),
            "0 channel moves planned"
        );
        let c = channels_plan_comment("3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c", &plan);
        assert!(!c.contains("@acme"), "a reason cannot mention anyone: {c}");
        assert!(!c.contains("<b>"), "a reason cannot open HTML: {c}");
        insta::assert_snapshot!(c);
    }
}
