//! The text `bakery lifecycle` prints: one line per copy of each planned release (what
//! happens to it, or would, and why), then what was done, and a summary line. The same
//! words go into the job log for each action. Pure.

use super::lifecycle::{Entry, Verdict};
use super::retire::{CopyResult, LifecycleReport};
use crate::aws::retire::Retired;

const HEADERS: [&str; 7] = [
    "ACTION", "RECIPE", "VERSION", "ACCOUNT", "REGION", "IMAGE", "WHY",
];

/// `deregister`, `deprecate`, or `keep` for a spared release.
fn action(entry: &Entry) -> &'static str {
    match &entry.verdict {
        Verdict::Retire { action, .. } => action.as_str(),
        Verdict::Spare { .. } => "keep",
    }
}

fn why(entry: &Entry) -> String {
    match &entry.verdict {
        Verdict::Retire { why, .. } => why.to_string(),
        Verdict::Spare {
            action,
            why,
            spared,
        } => format!("{spared} (would {}: {why})", action.as_str()),
    }
}

/// What happened to one copy, for the log and the output.
pub fn outcome(result: &CopyResult) -> String {
    if let Some(e) = &result.error {
        return format!("FAILED: {e}");
    }
    match &result.result {
        None => "-".into(),
        Some(Retired::Deprecated { at }) => format!("deprecated from {at}"),
        Some(Retired::Deregistered {
            snapshots,
            launch_permissions,
            parameter,
        }) => {
            let mut s = format!("deregistered with {} snapshot(s)", snapshots.len());
            if *launch_permissions > 0 {
                s.push_str(&format!(
                    ", {launch_permissions} launch permission(s) removed"
                ));
            }
            if let Some(p) = parameter {
                s.push_str(&format!(", parameter {p} deleted"));
            }
            s
        }
        Some(Retired::Untouched(why)) => format!("left alone: {why}"),
    }
}

/// One copy's line in the job log: `recipe@version image in account/region: outcome (why)`.
pub fn copy_line(entry: &Entry, result: &CopyResult) -> String {
    format!(
        "{}@{} {} in {}/{}: {} ({})",
        entry.recipe,
        entry.version,
        result.image_id,
        result.account,
        result.region,
        outcome(result),
        why(entry)
    )
}

/// The whole output of a run.
pub fn render(report: &LifecycleReport) -> String {
    let mut out = String::new();
    if report.entries.is_empty() {
        out.push_str("the lifecycle rules retire nothing\n");
    } else {
        let rows: Vec<[String; 7]> = report
            .entries
            .iter()
            .flat_map(|e| {
                e.results.iter().map(move |c| {
                    [
                        action(&e.entry).to_string(),
                        e.entry.recipe.clone(),
                        e.entry.version.clone(),
                        c.account.clone(),
                        c.region.clone(),
                        c.image_id.clone(),
                        why(&e.entry),
                    ]
                })
            })
            .collect();
        let mut widths = HEADERS.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    l.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&HEADERS.map(String::from));
        for r in &rows {
            line(r);
        }
    }
    let acted: Vec<(&Entry, &CopyResult)> = report
        .entries
        .iter()
        .filter(|e| e.entry.retires().is_some())
        .flat_map(|e| e.results.iter().map(move |c| (&e.entry, c)))
        .collect();
    if !report.dry_run && report.skipped.is_empty() {
        for (entry, result) in &acted {
            out.push_str(&copy_line(entry, result));
            out.push('\n');
        }
    }
    for s in &report.skipped {
        out.push_str(&format!("skipped {s}\n"));
    }
    let n = acted.len();
    if report.dry_run {
        out.push_str(&format!("{n} image(s) would be retired (dry run)\n"));
    } else if !report.skipped.is_empty() {
        out.push_str(&format!(
            "nothing retired: {} target(s) could not be searched, and an image there may \
             be built on a release this would retire\n",
            report.skipped.len()
        ));
    } else {
        let done = acted
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.result,
                    Some(Retired::Deprecated { .. } | Retired::Deregistered { .. })
                )
            })
            .count();
        out.push_str(&format!("{done} of {n} image(s) retired\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lifecycle::{Action, Copy, Spared, Why};
    use crate::registry::retire::EntryResult;

    fn entry(version: &str, verdict: Verdict) -> Entry {
        Entry {
            recipe: "base".into(),
            version: version.into(),
            repo: Some("acme/images".into()),
            created_at: "2026-05-01T00:00:00Z".into(),
            verdict,
            copies: vec![Copy {
                account: "111111111111".into(),
                region: "eu-west-1".into(),
                image_id: format!("ami-{version}"),
                build_id: "b-1".into(),
            }],
        }
    }

    fn report(dry_run: bool, result: Option<Retired>) -> LifecycleReport {
        let retire = entry(
            "release-0.1.0",
            Verdict::Retire {
                action: Action::Deregister,
                why: Why::Keep { keep: 1, rank: 3 },
            },
        );
        let spare = entry(
            "release-0.2.0",
            Verdict::Spare {
                action: Action::Deregister,
                why: Why::Keep { keep: 1, rank: 2 },
                spared: Spared::Channel {
                    channel: "production".into(),
                },
            },
        );
        let results = |e: &Entry, r: Option<Retired>| {
            e.copies
                .iter()
                .map(|c| CopyResult {
                    account: c.account.clone(),
                    region: c.region.clone(),
                    image_id: c.image_id.clone(),
                    result: r.clone(),
                    error: None,
                })
                .collect()
        };
        LifecycleReport {
            dry_run,
            repo: Some("acme/images".into()),
            entries: vec![
                EntryResult {
                    results: results(&retire, result),
                    entry: retire,
                },
                EntryResult {
                    results: results(&spare, None),
                    entry: spare,
                },
            ],
            skipped: vec![],
        }
    }

    #[test]
    fn a_dry_run_prints_the_plan() {
        insta::assert_snapshot!(render(&report(true, None)));
    }

    #[test]
    fn a_run_prints_what_it_did() {
        insta::assert_snapshot!(render(&report(
            false,
            Some(Retired::Deregistered {
                snapshots: vec!["snap-1".into()],
                launch_permissions: 2,
                parameter: Some("/bakery/acme/images/base/versions/release-0.1.0".into()),
            })
        )));
    }
}
