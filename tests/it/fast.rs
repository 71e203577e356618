//! The fast tier: bakery's GitHub conversation in process (see
//! `support/conversation.rs`): the real router and workers, SQLite in memory, the fake
//! GitHub, and the fake image engine. Each conversation runs in seconds; run them all
//! with `cargo test --test it fast::`.

use std::collections::BTreeSet;

use bakery::build::Step;
use bakery::database::{JobKind, JobState};

use crate::support::conversation::*;
use crate::support::fake_engine::{EngineFailure, FakeImage, HOME_ACCOUNT};
use crate::support::fake_github::CheckRun;
use crate::support::push_event::TagKind;

const PLAN_MARKER: &str = "<!-- bakery:plan -->";

/// A contributor opens a pull request that breaks a recipe: bakery validates it, fails
/// the check run with an annotation on the broken line, writes one plan comment, and
/// builds nothing. Intake, the validation flow and the reporting, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_recipe_gets_a_failed_check_an_annotation_and_one_plan_comment() {
    let c = Conversation::start().await;
    let path = "recipes/base-ubuntu/recipe.toml";
    let good = std::fs::read_to_string(c.path(path)).unwrap();
    let broken = good.replacen("instance_type", "instance_typ", 1);
    assert_ne!(broken, good, "the example recipe sets instance_type");
    let sha = c.open_pr(7, "tune-base", "mona", &[(path, &broken)]);

    let job = c
        .deliver_and_wait(
            "pull_request",
            "pr-7-opened",
            &c.pr_payload("opened", 7, &sha, "tune-base", "mona"),
        )
        .await;
    assert_eq!(job.kind, JobKind::Validation);
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{:?}\n{}",
        job.error,
        c.job_log(job.id).await
    );

    let repo = c.github.repo(REPO);
    let runs: Vec<_> = repo
        .check_runs
        .values()
        .filter(|r| r.current["head_sha"] == sha.as_str())
        .collect();
    assert_eq!(runs.len(), 1, "only bakery/validate, no build: {runs:#?}");
    let run = runs[0];
    assert_eq!(run.current["name"], "bakery/validate");
    assert_eq!(run.current["conclusion"], "failure");
    let typo_line = broken
        .lines()
        .position(|l| l.contains("instance_typ "))
        .unwrap() as u64
        + 1;
    assert!(
        run.annotations.iter().any(|a| a["path"] == path
            && a["start_line"] == typo_line
            && a["message"].as_str().unwrap().contains("instance_typ")),
        "{:#?}",
        run.annotations
    );
    let plans: Vec<String> = c
        .bot_comments(7)
        .into_iter()
        .filter(|b| b.starts_with(PLAN_MARKER))
        .collect();
    assert_eq!(plans.len(), 1, "{plans:#?}");
    assert!(plans[0].contains("instance_typ"), "{}", plans[0]);
    c.assert_no_github_violations();
}

/// Comment commands anyone may send: help, an unknown command (answered with the help
/// text), and plain discussion (not answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_an_unknown_command_and_plain_discussion() {
    let c = Conversation::start().await;
    let sha = c.open_pr(8, "docs", "mona", &[("README.md", "docs\n")]);
    let _ = sha;

    let job = c
        .deliver_and_wait(
            "issue_comment",
            "c-help",
            &c.comment_payload(8, 1001, "mona", "/bakery help"),
        )
        .await;
    assert_eq!(job.kind, JobKind::Command);
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let job = c
        .deliver_and_wait(
            "issue_comment",
            "c-deploy",
            &c.comment_payload(8, 1002, "mona", "/bakery deploy now"),
        )
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let job = c
        .deliver_and_wait(
            "issue_comment",
            "c-chat",
            &c.comment_payload(8, 1003, "mona", "Looks good to me"),
        )
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);

    let answers = c.bot_comments(8);
    assert_eq!(
        answers.len(),
        2,
        "help and the unknown command: {answers:#?}"
    );
    assert!(answers[0].contains("/bakery build"), "{}", answers[0]);
    assert!(
        answers[1].starts_with(":question: `deploy`"),
        "{}",
        answers[1]
    );
    c.assert_no_github_violations();
}

/// A writer's commands on a validated pull request: `/bakery build` of a recipe that does
/// not exist is refused with the reason and the recipes there are, and `/bakery cancel`
/// with nothing running says so. Nothing is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_build_of_no_recipe_and_a_cancel_with_nothing_to_stop() {
    let c = Conversation::start().await;
    c.github
        .set_permission(REPO, "octocat", "write", "maintain");
    let path = "recipes/base-ubuntu/files/motd";
    let sha = c.open_pr(9, "motd", "mona", &[(path, "Hello.\n")]);
    let job = c
        .deliver_and_wait(
            "pull_request",
            "pr-9-opened",
            &c.pr_payload("opened", 9, &sha, "motd", "mona"),
        )
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);

    let job = c
        .deliver_and_wait(
            "issue_comment",
            "c-build-nosuch",
            &c.comment_payload(9, 2001, "octocat", "/bakery build nosuch"),
        )
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(
        job.result.as_ref().unwrap()["no_build"]
            .as_str()
            .unwrap_or_default()
            .split(" (")
            .next(),
        Some(format!("there is no recipe `nosuch` at {}", &sha[..7]).as_str()),
        "{:?}",
        job.result
    );
    let job = c
        .deliver_and_wait(
            "issue_comment",
            "c-cancel",
            &c.comment_payload(9, 2002, "octocat", "/bakery cancel"),
        )
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);

    let answers: Vec<String> = c
        .bot_comments(9)
        .into_iter()
        .filter(|b| !b.starts_with(PLAN_MARKER))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:#?}");
    assert!(
        answers[0].starts_with("@octocat, bakery did not build: there is no recipe `nosuch`"),
        "{}",
        answers[0]
    );
    assert!(
        answers[0].contains("base"),
        "names the recipes: {}",
        answers[0]
    );
    assert_eq!(
        answers[1],
        "@octocat, bakery has nothing to cancel: no job of this pull request is queued or running.\n"
    );
    assert!(
        !c.github
            .repo(REPO)
            .check_runs
            .values()
            .any(|r| r.current["name"]
                .as_str()
                .is_some_and(|n| n != "bakery/validate")),
        "nothing was built"
    );
    c.assert_no_github_violations();
}

/// Intake refuses a delivery signed with another secret before it records anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_delivery_is_refused_and_records_nothing() {
    let c = Conversation::start().await;
    let payload = c.comment_payload(10, 3001, "mallory", "/bakery help");
    let (status, _) = c
        .deliver_signed("not-the-secret", "issue_comment", "forged-1", &payload)
        .await;
    assert_eq!(status, 401);
    assert!(c.jobs().await.is_empty());
    assert!(c.bot_comments(10).is_empty());
}

/// The only check run named `name` on `sha`.
fn only_check_run(c: &Conversation, name: &str, sha: &str) -> CheckRun {
    let runs: Vec<CheckRun> = c
        .github
        .repo(REPO)
        .check_runs
        .values()
        .filter(|r| r.current["name"] == name && r.current["head_sha"] == sha)
        .cloned()
        .collect();
    assert_eq!(runs.len(), 1, "one check run {name} on {sha}: {runs:#?}");
    runs.into_iter().next().unwrap()
}

/// The image table's row for `image` in `body`, as `[recipe, account, region, ami]`.
fn image_row(body: &str, image: &FakeImage) -> Vec<String> {
    let rows: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with('|') && l.contains(&image.ami))
        .collect();
    assert_eq!(rows.len(), 1, "one row for {}: {body}", image.ami);
    rows[0]
        .split('|')
        .map(|c| c.trim().trim_matches('`').to_string())
        .filter(|c| !c.is_empty())
        .take(4)
        .collect()
}

/// A maintainer pushes an annotated release tag: bakery builds the recipe `bakery.toml`
/// names for it at the tagged commit for every account and region it distributes to, concludes
/// its check run with the image table, comments every image on the commit by account and
/// region as the engine made them, and publishes the GitHub Release with notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_release_tag_builds_reports_every_image_and_publishes_the_release() {
    let c = Conversation::start().await;
    let tag = "release-1.0.0";
    let pushed = c.push_tag(tag, TagKind::Annotated);
    assert!(pushed.is_annotated());
    let sha = pushed.commit.clone();

    let job = c
        .deliver_and_wait("push", "push-release-1.0.0", &c.push_payload(&pushed))
        .await;
    assert_eq!(job.kind, JobKind::Release);
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{:?}\n{}",
        job.error,
        c.job_log(job.id).await
    );

    // The engine was asked once: the tagged recipe, at the tagged commit, for the home
    // account's region and the account the recipe distributes to.
    let asked = c.engine.asked();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].recipe, "base-ubuntu");
    assert_eq!(asked[0].version, tag);
    assert_eq!(asked[0].git_sha, sha);
    assert!(!asked[0].ephemeral, "a release keeps its images");
    assert_eq!(asked[0].job_id, Some(job.id));
    let targets: BTreeSet<(String, String)> = asked[0].targets.iter().cloned().collect();
    let expected: BTreeSet<(String, String)> = [
        (HOME_ACCOUNT.to_string(), "us-east-1".to_string()),
        ("111111111111".to_string(), "eu-west-1".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(targets, expected);
    let images = c.engine.images();
    assert_eq!(images.len(), 2, "{images:#?}");

    // The recipe's check run succeeded and shows every image.
    let run = only_check_run(&c, "bakery/base-ubuntu", &sha);
    assert_eq!(run.current["status"], "completed");
    assert_eq!(run.current["conclusion"], "success");
    let summary = run.current["output"]["summary"]
        .as_str()
        .unwrap_or_default();
    for image in &images {
        assert_eq!(
            image_row(summary, image),
            ["base-ubuntu", &image.account, &image.region, &image.ami]
        );
    }

    // One comment on the tagged commit lists every image by account and region.
    let repo = c.github.repo(REPO);
    assert_eq!(repo.commit_comments.len(), 1, "{:#?}", repo.commit_comments);
    assert_eq!(repo.commit_comments[0]["commit_id"], sha.as_str());
    let comment = repo.commit_comments[0]["body"].as_str().unwrap();
    for image in &images {
        assert_eq!(
            image_row(comment, image),
            ["base-ubuntu", &image.account, &image.region, &image.ami]
        );
    }

    // The GitHub Release exists for the tag, with notes: the first release, the change it
    // ships, and the same images.
    assert_eq!(repo.releases.len(), 1, "{:#?}", repo.releases);
    let release = repo.releases.values().next().unwrap();
    assert_eq!(release["tag_name"], tag);
    let notes = release["body"].as_str().unwrap_or_default();
    assert!(notes.contains("First release."), "{notes}");
    assert!(notes.contains("Add the image recipes"), "{notes}");
    for image in &images {
        assert_eq!(
            image_row(notes, image),
            ["base-ubuntu", &image.account, &image.region, &image.ami]
        );
    }
    c.assert_no_github_violations();
}

/// The engine fails while distributing (AWS refuses a copy): the recipe's check run
/// fails naming the step, the commit gets the failure with AWS's answer, and no Release
/// is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_failure_fails_the_check_run_and_publishes_no_release() {
    let c = Conversation::start().await;
    c.engine.fail_in(
        Step::Distribute,
        EngineFailure {
            code: "InvalidParameterValue".into(),
            message: "the KMS key alias/ami cannot be used in eu-west-1".into(),
        },
    );
    let tag = "release-1.0.1";
    let pushed = c.push_tag(tag, TagKind::Annotated);
    let sha = pushed.commit.clone();

    let job = c
        .deliver_and_wait("push", "push-release-1.0.1", &c.push_payload(&pushed))
        .await;
    assert_eq!(job.kind, JobKind::Release);
    assert_eq!(job.state, JobState::Failed, "{}", c.job_log(job.id).await);
    let error = job.error.clone().unwrap_or_default();
    assert!(error.contains("InvalidParameterValue"), "{error}");
    assert_eq!(c.engine.asked().len(), 1);
    assert!(c.engine.images().is_empty());

    let run = only_check_run(&c, "bakery/base-ubuntu", &sha);
    assert_eq!(run.current["status"], "completed");
    assert_eq!(run.current["conclusion"], "failure");
    assert_eq!(run.current["output"]["title"], "Failed during distribute");
    let repo = c.github.repo(REPO);
    assert_eq!(repo.commit_comments.len(), 1, "{:#?}", repo.commit_comments);
    assert_eq!(repo.commit_comments[0]["commit_id"], sha.as_str());
    let comment = repo.commit_comments[0]["body"].as_str().unwrap();
    assert!(comment.contains("distribute"), "{comment}");
    assert!(
        comment.contains("the KMS key alias/ami cannot be used in eu-west-1"),
        "{comment}"
    );
    assert!(repo.releases.is_empty(), "{:#?}", repo.releases);
    c.assert_no_github_violations();
}
