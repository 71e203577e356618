//! Pull-request stories: what a contributor and a maintainer do on a pull request, and
//! what bakery answers. Each story runs the real `bakery serve` against the fake GitHub
//! (which serves a real bare git repository), moto and the sandboxed sshd, with signed
//! deliveries shaped exactly like GitHub's own examples.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bakery::database::{Job, JobState};
use serde_json::{json, Value};

use crate::support::examples::example;
use crate::support::fake_github::{CheckRun, PullState};
use crate::support::git::git;
use crate::support::story::*;

const BOT: &str = "bakery[bot]";
const PLAN_MARKER: &str = "<!-- bakery:plan -->";
const FORK_MARKER: &str = "<!-- bakery:fork-approval -->";

fn snapshot_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"ami-[0-9a-f]{8,17}", "ami-[id]"),
        (r"snap-[0-9a-f]{8,17}", "snap-[id]"),
        (r"\b[0-9a-f]{40}\b", "[sha]"),
        (r"\b[0-9a-f]{7}\b", "[short-sha]"),
        (r"\b\d+(\.\d+)?\s?(ms|s|m|h)\b( \d+s)?", "[duration]"),
        (r"token=[0-9a-f]{64}", "token=[token]"),
        (r"/jobs/\d+", "/jobs/[id]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
    ]
}

/// Commits `files` on a branch of the developer's clone and publishes the commit as
/// GitHub does for pull request `number`: under `refs/pull/<number>/head` of the base
/// repository (a fork's commits land there too). Returns the head SHA.
pub(crate) fn push_pr_commit(
    story: &Story,
    branch: &str,
    number: u64,
    files: &[(&str, &str)],
) -> String {
    let current = git(&story.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
    if current.trim() != branch {
        let exists = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q", branch])
            .current_dir(&story.work)
            .status()
            .unwrap()
            .success();
        if exists {
            git(&story.work, &["checkout", "-q", branch]);
        } else {
            git(&story.work, &["checkout", "-q", "-b", branch, "main"]);
        }
    }
    for (path, content) in files {
        let p = story.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&story.work, &["add", "-A"]);
    git(
        &story.work,
        &["commit", "-q", "-m", &format!("change {branch}")],
    );
    git(
        &story.work,
        &[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("HEAD:refs/pull/{number}/head"),
        ],
    );
    git(&story.work, &["rev-parse", "HEAD"]).trim().to_string()
}

/// GitHub's `pull_request` event (`opened`, `synchronize`...) for the story's
/// repository, from the official example with only the values changed.
pub(crate) fn pr_payload(
    story: &Story,
    action: &str,
    number: u64,
    sha: &str,
    branch: &str,
    head_repo: &str,
    author: &str,
) -> Value {
    let mut p = example("pull_request", |e| e["action"] == action);
    story.point_at_repo(&mut p);
    p["number"] = json!(number);
    let pr = &mut p["pull_request"];
    pr["number"] = json!(number);
    pr["draft"] = json!(false);
    pr["user"]["login"] = json!(author);
    pr["head"]["sha"] = json!(sha);
    pr["head"]["ref"] = json!(branch);
    pr["head"]["label"] = json!(format!("{}:{branch}", head_repo.split('/').next().unwrap()));
    pr["head"]["repo"]["full_name"] = json!(head_repo);
    pr["head"]["repo"]["name"] = json!(head_repo.split('/').nth(1).unwrap());
    pr["head"]["repo"]["owner"]["login"] = json!(head_repo.split('/').next().unwrap());
    pr["base"]["ref"] = json!("main");
    pr["base"]["repo"]["full_name"] = json!(REPO);
    p
}

/// GitHub's `issue_comment` `created` event for a comment by `author` on pull request
/// `number`, from the official example with only the values changed (and the
/// `issue.pull_request` GitHub adds when the issue is a pull request).
fn comment_payload(story: &Story, number: u64, comment_id: u64, author: &str, body: &str) -> Value {
    let mut p = example("issue_comment", |e| e["action"] == "created");
    story.point_at_repo(&mut p);
    let api = format!("https://api.github.com/repos/{REPO}");
    p["issue"]["number"] = json!(number);
    p["issue"]["pull_request"] = json!({
        "url": format!("{api}/pulls/{number}"),
        "html_url": format!("https://github.com/{REPO}/pull/{number}"),
        "diff_url": format!("https://github.com/{REPO}/pull/{number}.diff"),
        "patch_url": format!("https://github.com/{REPO}/pull/{number}.patch"),
        "merged_at": null
    });
    p["comment"]["id"] = json!(comment_id);
    p["comment"]["body"] = json!(body);
    p["comment"]["user"]["login"] = json!(author);
    p["comment"]["author_association"] = json!(if author == BOT { "NONE" } else { "MEMBER" });
    p
}

/// Posts a delivery and waits for the job it created to finish.
pub(crate) async fn deliver_and_wait(
    story: &Story,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> Job {
    let (status, body) = story.deliver(event, delivery, payload).await;
    assert_eq!(status, 202, "{event} {delivery}: {body}");
    let started = Instant::now();
    loop {
        let job = story
            .jobs()
            .await
            .into_iter()
            .find(|j| j.delivery_ids.iter().any(|d| d == delivery));
        if let Some(job) = job {
            return story.wait_for_job(job.id).await;
        }
        assert!(
            started.elapsed() < JOB_TIMEOUT,
            "delivery {delivery} made no job: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_job_succeeded(story: &Story, job: &Job) {
    let log = story.job_log(job.id).await;
    story.assert_succeeded(job, &log);
}

fn check_runs(story: &Story, name: &str) -> Vec<CheckRun> {
    story
        .github
        .repo(REPO)
        .check_runs
        .values()
        .filter(|r| r.current["name"] == name)
        .cloned()
        .collect()
}

fn check_run_on(story: &Story, name: &str, sha: &str) -> CheckRun {
    let runs: Vec<CheckRun> = check_runs(story, name)
        .into_iter()
        .filter(|r| r.current["head_sha"] == sha)
        .collect();
    assert_eq!(runs.len(), 1, "one check run {name} on {sha}: {runs:#?}");
    runs.into_iter().next().unwrap()
}

/// The bodies and authors of the comments on pull request `number`, oldest first.
fn pr_comments(story: &Story, number: u64) -> Vec<(String, String)> {
    story
        .github
        .repo(REPO)
        .issue_comments
        .values()
        .filter(|(n, _)| *n == number)
        .map(|(_, c)| {
            (
                c["user"]["login"].as_str().unwrap_or("").to_string(),
                c["body"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn comments_with(story: &Story, number: u64, marker: &str) -> Vec<String> {
    pr_comments(story, number)
        .into_iter()
        .filter(|(author, body)| author == BOT && body.contains(marker))
        .map(|(_, body)| body)
        .collect()
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the recipe")) as u64
        + 1
}

/// A contributor's pull request breaks a recipe: the check run carries one annotation
/// per problem, the plan comment lists them, and nothing is built. The fix pushed to the
/// same pull request edits that comment rather than adding another. Then the comment
/// commands: help, an unknown command, and comments that hold no command for bakery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_recipe_pr_gets_annotations_no_build_and_one_plan_comment() {
    let story = Story::start().await;
    let number = 7;
    let recipe_path = "recipes/sandbox-base/recipe.toml";
    let good = std::fs::read_to_string(story.work.join(recipe_path)).unwrap();
    let broken = good
        .replace(
            "instance_type = \"t3.micro\"",
            "instance_typ = \"t3.micro\"",
        )
        .replace("{{ var.greeting }}", "{{ var.greting }}");
    assert_ne!(broken, good);
    let sha = push_pr_commit(&story, "tune-base", number, &[(recipe_path, &broken)]);

    let opened = pr_payload(&story, "opened", number, &sha, "tune-base", REPO, "mona");
    let job = deliver_and_wait(&story, "pull_request", "pr-opened-1", &opened).await;
    assert_job_succeeded(&story, &job).await;
    assert_eq!(job.kind, bakery::database::JobKind::Validation);

    // The check run: failed, with one annotation per problem, each on its line.
    let run = check_run_on(&story, "bakery/validate", &sha);
    assert_eq!(run.current["status"], "completed");
    assert_eq!(run.current["conclusion"], "failure");
    let mut annotations: Vec<(String, u64, u64, String, String)> = run
        .annotations
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_string(),
                a["start_line"].as_u64().unwrap(),
                a["end_line"].as_u64().unwrap(),
                a["annotation_level"].as_str().unwrap().to_string(),
                a["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    annotations.sort();
    let typo_line = line_of(&broken, "instance_typ ");
    let var_line = line_of(&broken, "var.greting");
    assert_eq!(annotations.len(), 2, "{annotations:#?}");
    let (path, start, end, level, message) = &annotations[0];
    assert_eq!(
        (path.as_str(), *start, *end, level.as_str()),
        (recipe_path, typo_line, typo_line, "failure")
    );
    assert!(
        message.contains("instance_typ")
            && message.contains("hint: ")
            && message.contains("instance_type"),
        "{message}"
    );
    let (path, start, end, level, message) = &annotations[1];
    assert_eq!(
        (path.as_str(), *start, *end, level.as_str()),
        (recipe_path, var_line, var_line, "failure")
    );
    assert!(
        message.contains("greting") && message.contains("greeting"),
        "{message}"
    );

    // No build: no check run for the recipe, and not one call to start an instance.
    assert!(check_runs(&story, "bakery/sandbox-base").is_empty());
    assert!(story.proxy.calls("RunInstances").is_empty());

    // One plan comment, listing the problems.
    let plans = comments_with(&story, number, PLAN_MARKER);
    assert_eq!(plans.len(), 1, "{plans:#?}");
    assert!(plans[0].contains("2 problems"), "{}", plans[0]);
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("broken_recipe_plan_comment", plans[0]);
    });

    // The contributor pushes a fix to the same pull request.
    let fixed = good.replace("echo {{ var.greeting }}", "echo {{ var.greeting }} again");
    let sha2 = push_pr_commit(&story, "tune-base", number, &[(recipe_path, &fixed)]);
    let sync = pr_payload(
        &story,
        "synchronize",
        number,
        &sha2,
        "tune-base",
        REPO,
        "mona",
    );
    let job = deliver_and_wait(&story, "pull_request", "pr-sync-1", &sync).await;
    assert_job_succeeded(&story, &job).await;
    let run = check_run_on(&story, "bakery/validate", &sha2);
    assert_eq!(run.current["conclusion"], "success");
    assert!(run.annotations.is_empty(), "{:#?}", run.annotations);
    let plans = comments_with(&story, number, PLAN_MARKER);
    assert_eq!(plans.len(), 1, "the plan comment is edited, not duplicated");
    assert!(plans[0].contains("sandbox-base-pr-7-"), "{}", plans[0]);
    assert!(!plans[0].contains("problem"), "{}", plans[0]);
    assert_eq!(story.github.calls_of("issues/update-comment").len(), 1);
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("fixed_recipe_plan_comment", plans[0]);
    });
    // pull_requests = "on-command": still no build.
    assert!(check_runs(&story, "bakery/sandbox-base").is_empty());
    assert!(story.proxy.calls("RunInstances").is_empty());

    // A pull request that touches no recipe gets nothing.
    let sha3 = push_pr_commit(&story, "docs-only", 9, &[("docs/notes.md", "Notes.\n")]);
    let before = story.github.calls().len();
    let docs = pr_payload(&story, "opened", 9, &sha3, "docs-only", REPO, "mona");
    let job = deliver_and_wait(&story, "pull_request", "pr-docs", &docs).await;
    assert_job_succeeded(&story, &job).await;
    assert!(check_runs(&story, "bakery/validate")
        .iter()
        .all(|r| r.current["head_sha"] != sha3.as_str()));
    let writes: Vec<String> = story.github.calls()[before..]
        .iter()
        .filter(|c| {
            c.method != "GET" && !c.path.contains("access_tokens") && !c.path.starts_with("/git/")
        })
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(story.job_log(job.id).await.contains("changes no recipe"));

    // Comment commands.
    let comments_before = pr_comments(&story, number).len();
    let help = comment_payload(&story, number, 9001, "mona", "/bakery help");
    let job = deliver_and_wait(&story, "issue_comment", "c-help", &help).await;
    assert_job_succeeded(&story, &job).await;
    let all = pr_comments(&story, number);
    assert_eq!(all.len(), comments_before + 1);
    let (author, body) = all.last().unwrap().clone();
    assert_eq!(author, BOT);
    insta::assert_snapshot!("help_comment", body);

    let unknown = comment_payload(&story, number, 9002, "mona", "Thanks!\n\n/bakery deploy");
    let job = deliver_and_wait(&story, "issue_comment", "c-unknown", &unknown).await;
    assert_job_succeeded(&story, &job).await;
    let all = pr_comments(&story, number);
    assert_eq!(all.len(), comments_before + 2);
    let (_, body) = all.last().unwrap().clone();
    assert!(
        body.starts_with(":question: `deploy` is not a bakery command"),
        "{body}"
    );
    assert!(body.contains("| `/bakery help` |"), "{body}");

    // Quoted, in code, or bakery's own: no answer, no build.
    for (i, (author, text)) in [
        (
            "mona",
            "To build, a maintainer writes:\n\n```\n/bakery build\n```\n",
        ),
        ("mona", "Example:\n\n    /bakery build sandbox-base\n"),
        ("octocat", "> /bakery build\n\nNot yet, please."),
        (BOT, "/bakery build\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = comment_payload(&story, number, 9100 + i as u64, author, text);
        let job = deliver_and_wait(&story, "issue_comment", &format!("c-quiet-{i}"), &p).await;
        assert_job_succeeded(&story, &job).await;
        assert_eq!(
            job.result.as_ref().unwrap()["command"],
            Value::Null,
            "{text}"
        );
    }
    assert_eq!(pr_comments(&story, number).len(), comments_before + 2);
    assert!(story.proxy.calls("RunInstances").is_empty());
    assert!(
        story
            .github
            .calls_of("repos/get-collaborator-permission-level")
            .is_empty(),
        "no permission check for comments that hold no command"
    );
    story.assert_no_github_violations();
}

/// A pull request from a fork is validated but never built on its own: it gets the
/// approval notice once. `/bakery build` from a reader is refused; from a writer it
/// builds the changed recipe into a throwaway image, deregistered when the build ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fork_pr_builds_only_when_a_writer_asks() {
    let story = Story::start().await;
    let number = 8;
    let fork = "mallory/images";
    story.github.set_permission(REPO, "hubot", "read", "triage");
    story
        .github
        .set_permission(REPO, "octocat", "write", "maintain");
    let motd = "recipes/sandbox-base/files/motd";
    let sha = push_pr_commit(
        &story,
        "friendlier-motd",
        number,
        &[(motd, "Hello from a fork.\n")],
    );
    story.github.set_pull(
        REPO,
        number,
        PullState {
            head_sha: sha.clone(),
            head_ref: "friendlier-motd".into(),
            head_repo: fork.into(),
            base_ref: "main".into(),
            author: "mallory".into(),
            state: "open".into(),
        },
    );

    let opened = pr_payload(
        &story,
        "opened",
        number,
        &sha,
        "friendlier-motd",
        fork,
        "mallory",
    );
    let job = deliver_and_wait(&story, "pull_request", "fork-opened", &opened).await;
    assert_job_succeeded(&story, &job).await;
    assert_eq!(job.payload["is_fork"], true);
    assert_eq!(
        check_run_on(&story, "bakery/validate", &sha).current["conclusion"],
        "success"
    );
    let notices = comments_with(&story, number, FORK_MARKER);
    assert_eq!(notices.len(), 1, "{notices:#?}");
    insta::assert_snapshot!("fork_approval_comment", notices[0]);
    // Reopened: validated again, the notice is not repeated.
    let reopened = pr_payload(
        &story,
        "reopened",
        number,
        &sha,
        "friendlier-motd",
        fork,
        "mallory",
    );
    let job = deliver_and_wait(&story, "pull_request", "fork-reopened", &reopened).await;
    assert_job_succeeded(&story, &job).await;
    assert_eq!(comments_with(&story, number, FORK_MARKER).len(), 1);
    assert_eq!(comments_with(&story, number, PLAN_MARKER).len(), 1);
    assert!(check_runs(&story, "bakery/sandbox-base").is_empty());
    assert!(story.proxy.calls("RunInstances").is_empty());

    // A reader asks for a build: refused, with a comment that says why.
    let before = pr_comments(&story, number).len();
    let ask = comment_payload(&story, number, 9201, "hubot", "/bakery build");
    let job = deliver_and_wait(&story, "issue_comment", "fork-build-reader", &ask).await;
    assert_job_succeeded(&story, &job).await;
    let all = pr_comments(&story, number);
    assert_eq!(all.len(), before + 1);
    let (author, body) = all.last().unwrap().clone();
    assert_eq!(author, BOT);
    assert_eq!(
        body,
        "@hubot, `/bakery build` needs write permission on this repository (you have read). \
         Ask a maintainer to comment it.\n"
    );
    assert!(check_runs(&story, "bakery/sandbox-base").is_empty());
    assert!(story.proxy.calls("RunInstances").is_empty());

    // A writer asks: the changed recipe is built, from the pull request's head.
    let ask = comment_payload(
        &story,
        number,
        9202,
        "octocat",
        "Reviewed, looks safe.\n\n/bakery build",
    );
    let job = deliver_and_wait(&story, "issue_comment", "fork-build-writer", &ask).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert!(log.contains("asked for by octocat"), "{log}");
    assert_eq!(story.proxy.calls("RunInstances").len(), 1);
    assert!(!story.github.calls_of("pulls/get").is_empty());
    let run = check_run_on(&story, "bakery/sandbox-base", &sha);
    assert_eq!(run.current["conclusion"], "success");
    assert!(run.status_history.iter().any(|s| s == "in_progress"));

    // The builder carried the pull request's version and the fork's change.
    let version = format!("pr-{number}-{}", &sha[..7]);
    let release = story.sandbox.read("/etc/release").unwrap();
    assert_eq!(release.lines().next(), Some(version.as_str()), "{release}");
    assert_eq!(
        story.sandbox.read("/etc/motd").unwrap(),
        "Hello from a fork.\n"
    );

    // The throwaway image was tagged as such, and is gone with its snapshots.
    let home = target(HOME, "us-east-1");
    let tagged_ephemeral: Vec<String> = story
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.params.values().any(|v| v == "bakery:ephemeral"))
        .map(|r| r.action)
        .collect();
    assert!(
        !tagged_ephemeral.is_empty(),
        "the throwaway image is tagged bakery:ephemeral"
    );
    assert!(story
        .images_named(&home, &format!("sandbox-base-{version}"))
        .await
        .is_empty());
    for t in story_targets() {
        let left = story.leftovers(&t, &BTreeSet::new()).await;
        assert!(left.is_empty(), "leftovers: {left:#?}");
    }
    assert!(!story.proxy.calls("DeregisterImage").is_empty());

    // The result is on the pull request.
    let results = comments_with(&story, number, "<!-- bakery:pr-build:sandbox-base -->");
    assert_eq!(results.len(), 1, "{results:#?}");
    assert!(results[0].contains("deregistered"), "{}", results[0]);
    assert!(results[0].contains("bakery:ephemeral"), "{}", results[0]);
    let result = job.result.clone().unwrap();
    assert_eq!(result["builds"][0]["recipe"], "sandbox-base");
    assert_eq!(result["builds"][0]["ok"], true);

    // No job of the pull request is left running.
    assert!(story
        .jobs()
        .await
        .iter()
        .all(|j| j.state == JobState::Succeeded));
    story.assert_no_github_violations();
}

/// With `pull_requests = "always"`, every push to a pull request from the repository
/// itself builds the changed recipes into throwaway images; `/bakery validate` only
/// validates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn always_mode_builds_a_same_repo_pr_and_validate_only_validates() {
    let story = Story::start_with(|files, _| {
        let toml = files["bakery.toml"].replace(
            "pull_requests = \"on-command\"",
            "pull_requests = \"always\"",
        );
        files.insert("bakery.toml".into(), toml);
    })
    .await;
    let number = 11;
    let motd = "recipes/sandbox-base/files/motd";
    let sha = push_pr_commit(&story, "motd", number, &[(motd, "Hello from main.\n")]);
    story.github.set_pull(
        REPO,
        number,
        PullState {
            head_sha: sha.clone(),
            head_ref: "motd".into(),
            head_repo: REPO.into(),
            base_ref: "main".into(),
            author: "mona".into(),
            state: "open".into(),
        },
    );
    let opened = pr_payload(&story, "opened", number, &sha, "motd", REPO, "mona");
    let job = deliver_and_wait(&story, "pull_request", "always-opened", &opened).await;
    assert_job_succeeded(&story, &job).await;
    assert_eq!(job.payload["is_fork"], false);
    let run = check_run_on(&story, "bakery/sandbox-base", &sha);
    assert_eq!(run.current["conclusion"], "success");
    assert_eq!(story.proxy.calls("RunInstances").len(), 1);
    let version = format!("pr-{number}-{}", &sha[..7]);
    let release = story.sandbox.read("/etc/release").unwrap();
    assert_eq!(release.lines().next(), Some(version.as_str()), "{release}");
    for t in story_targets() {
        let left = story.leftovers(&t, &BTreeSet::new()).await;
        assert!(left.is_empty(), "leftovers: {left:#?}");
    }
    assert!(comments_with(&story, number, FORK_MARKER).is_empty());
    assert_eq!(
        comments_with(&story, number, "<!-- bakery:pr-build:sandbox-base -->").len(),
        1
    );

    // `/bakery validate`: validated again at the head, the plan comment kept, no build.
    let ask = comment_payload(&story, number, 9301, "mona", "/bakery validate");
    let job = deliver_and_wait(&story, "issue_comment", "always-validate", &ask).await;
    assert_job_succeeded(&story, &job).await;
    let validations: Vec<CheckRun> = check_runs(&story, "bakery/validate")
        .into_iter()
        .filter(|r| r.current["head_sha"] == sha.as_str())
        .collect();
    assert_eq!(validations.len(), 2);
    assert!(validations
        .iter()
        .all(|r| r.current["conclusion"] == "success"));
    assert_eq!(comments_with(&story, number, PLAN_MARKER).len(), 1);
    assert_eq!(story.proxy.calls("RunInstances").len(), 1);
    story.assert_no_github_violations();
}

/// `/bakery cancel` from a writer stops the pull request's queued and running jobs, and
/// only those; from a reader it is refused. Runs the command handler as a worker does,
/// against a real store and the fake GitHub.
#[tokio::test]
async fn cancel_command_stops_only_this_prs_jobs() {
    use bakery::database::{JobKind, NewJob, SqlStore};
    use bakery::worker::JobContext;
    use std::sync::Arc;

    const TOKEN: &str = "ghp_cancelstorytoken0123456789abcdefABCD";
    let github = crate::support::fake_github::FakeGitHub::start().await;
    github.set_pat(TOKEN, "images-bot");
    github.add_repo(REPO, "/nonexistent", None);
    github.set_permission(REPO, "octocat", "write", "write");
    github.set_permission(REPO, "hubot", "read", "read");
    let store: bakery::database::DynStore = Arc::new(SqlStore::open_sqlite_memory().await.unwrap());
    let mut config: bakery::config::ServerConfig = toml::from_str("").unwrap();
    config.github.api_url = Some(github.api_url().to_string());
    config.github.token = Some(bakery::config::Secret::new(TOKEN));
    let work = tempfile::tempdir().unwrap();
    config.work_dir = work.path().to_path_buf();
    let deps = bakery::jobs::JobDeps::from_config(
        config,
        store.clone(),
        Arc::new(bakery::provision::ssh::SshProvisioner::default()),
    )
    .unwrap();

    let job = |kind: JobKind, pr: Option<i64>, key: &str, payload: Value| NewJob {
        kind,
        repo: REPO.into(),
        git_ref: pr
            .map(|n| format!("refs/pull/{n}/head"))
            .unwrap_or("release-1".into()),
        sha: "a".repeat(40),
        pr_number: pr,
        dedup_key: key.into(),
        payload,
    };
    // A build of #5 is running; a validation of #5, one of #6 and a release are queued.
    let running = store
        .enqueue_job(&job(JobKind::Validation, Some(5), "v5-running", json!({})))
        .await
        .unwrap()
        .unwrap();
    let leased = store
        .lease_next_job("worker-a", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, running);
    let queued = store
        .enqueue_job(&job(JobKind::Validation, Some(5), "v5-queued", json!({})))
        .await
        .unwrap()
        .unwrap();
    let other_pr = store
        .enqueue_job(&job(JobKind::Validation, Some(6), "v6", json!({})))
        .await
        .unwrap()
        .unwrap();
    let release = store
        .enqueue_job(&job(JobKind::Release, None, "r1", json!({})))
        .await
        .unwrap()
        .unwrap();

    let command = |author: &str, id: i64| {
        job(
            JobKind::Command,
            Some(5),
            &format!("c{id}"),
            json!({
                "clone_url": "/nonexistent",
                "installation_id": null,
                "comment_id": id,
                "body": "/bakery cancel",
                "author": author,
                "author_association": "MEMBER",
            }),
        )
    };
    let run = |new: NewJob| {
        let (store, deps) = (store.clone(), &deps);
        async move {
            let id = store.enqueue_job(&new).await.unwrap().unwrap();
            let ctx = JobContext {
                job: store.get_job(id).await.unwrap().unwrap(),
                store: store.clone(),
                worker: "worker-b".into(),
                cancel: tokio_util::sync::CancellationToken::new(),
                hand_over: tokio_util::sync::CancellationToken::new(),
            };
            let result = bakery::jobs::command::run(deps, &ctx).await;
            // The job is over: out of the queue, as the worker would leave it.
            store.request_cancel(id).await.unwrap();
            result
        }
    };

    // A reader: refused, nothing stops.
    run(command("hubot", 1)).await.unwrap();
    for id in [running, queued, other_pr, release] {
        let j = store.get_job(id).await.unwrap().unwrap();
        assert!(!j.cancel_requested && !j.state.is_finished(), "{j:?}");
    }
    let comments = pr_comments_of(&github, 5);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].contains("`/bakery cancel` needs write permission"),
        "{}",
        comments[0]
    );

    // A writer: #5's jobs stop, the others go on.
    let result = run(command("octocat", 2)).await.unwrap().unwrap();
    assert_eq!(result["cancelled"], json!([running, queued]));
    let j = store.get_job(running).await.unwrap().unwrap();
    assert!(j.cancel_requested, "{j:?}");
    let j = store.get_job(queued).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    for id in [other_pr, release] {
        let j = store.get_job(id).await.unwrap().unwrap();
        assert!(!j.cancel_requested && j.state == JobState::Queued, "{j:?}");
    }
    let comments = pr_comments_of(&github, 5);
    assert_eq!(comments.len(), 2);
    assert!(
        comments[1].starts_with("@octocat, bakery is stopping 2 jobs of this pull request"),
        "{}",
        comments[1]
    );
    assert!(comments[1].contains(&format!(
        "- job {running} (running, validation of `aaaaaaa`)"
    )));
    assert!(comments[1].contains(&format!("- job {queued} (queued, validation of `aaaaaaa`)")));
    assert!(pr_comments_of(&github, 6).is_empty());
    assert!(github.violations().is_empty(), "{:?}", github.violations());
}

fn pr_comments_of(github: &crate::support::fake_github::FakeGitHub, number: u64) -> Vec<String> {
    github
        .repo(REPO)
        .issue_comments
        .values()
        .filter(|(n, _)| *n == number)
        .map(|(_, c)| c["body"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A fork's author waits for a maintainer's review, then force-pushes a different commit
/// before bakery acts on the maintainer's `/bakery build` (GitHub's `synchronize` delivery
/// is late). The approval was for the reviewed head: nothing is built, and the pull
/// request says a new approval is needed. Once the new head is validated, a new
/// `/bakery build` builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_after_approval_is_not_built_without_a_new_approval() {
    let story = Story::start().await;
    let number = 12;
    let fork = "mallory/images";
    story
        .github
        .set_permission(REPO, "octocat", "write", "maintain");
    let motd = "recipes/sandbox-base/files/motd";
    let reviewed = push_pr_commit(&story, "motd", number, &[(motd, "Reviewed text.\n")]);
    let pull = |head: &str| PullState {
        head_sha: head.to_string(),
        head_ref: "motd".into(),
        head_repo: fork.into(),
        base_ref: "main".into(),
        author: "mallory".into(),
        state: "open".into(),
    };
    story.github.set_pull(REPO, number, pull(&reviewed));
    let opened = pr_payload(&story, "opened", number, &reviewed, "motd", fork, "mallory");
    let job = deliver_and_wait(&story, "pull_request", "opened", &opened).await;
    assert_job_succeeded(&story, &job).await;

    // The force-push lands; its delivery has not arrived yet. The maintainer approves
    // what they reviewed.
    let swapped = push_pr_commit(&story, "motd", number, &[(motd, "Swapped after review.\n")]);
    story.github.set_pull(REPO, number, pull(&swapped));
    let ask = comment_payload(&story, number, 9301, "octocat", "/bakery build");
    let job = deliver_and_wait(&story, "issue_comment", "approval", &ask).await;
    assert_job_succeeded(&story, &job).await;
    assert!(
        story.proxy.calls("RunInstances").is_empty(),
        "the swapped head is not built with the repository's credentials"
    );
    assert!(check_runs(&story, "bakery/sandbox-base").is_empty());
    let (author, answer) = pr_comments(&story, number).last().unwrap().clone();
    assert_eq!(author, BOT);
    assert!(
        answer.starts_with("@octocat, bakery did not build"),
        "{answer}"
    );
    assert!(
        answer.contains(&swapped[..7]) && answer.contains(&reviewed[..7]),
        "{answer}"
    );
    assert!(answer.contains("`/bakery build` again"), "{answer}");
    assert_eq!(
        job.result.as_ref().unwrap()["approved_sha"],
        reviewed.as_str()
    );

    // The push's delivery arrives; bakery validates the new head. A new approval builds it.
    let sync = pr_payload(
        &story,
        "synchronize",
        number,
        &swapped,
        "motd",
        fork,
        "mallory",
    );
    let job = deliver_and_wait(&story, "pull_request", "synchronize", &sync).await;
    assert_job_succeeded(&story, &job).await;
    let ask = comment_payload(&story, number, 9302, "octocat", "/bakery build");
    let job = deliver_and_wait(&story, "issue_comment", "approval-2", &ask).await;
    assert_job_succeeded(&story, &job).await;
    assert_eq!(story.proxy.calls("RunInstances").len(), 1);
    assert_eq!(
        check_run_on(&story, "bakery/sandbox-base", &swapped).current["conclusion"],
        "success"
    );
    story.assert_no_github_violations();
}

/// A same-repo pull request switches `bakery.toml` to `pull_requests = "always"` to get
/// credentialed builds on every push. The base branch says `on-command`, and the base
/// branch decides: the pull request is validated, not built.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_request_cannot_switch_itself_to_always_build() {
    let story = Story::start().await;
    let number = 13;
    let toml = std::fs::read_to_string(story.work.join("bakery.toml")).unwrap();
    assert!(toml.contains("pull_requests = \"on-command\""), "{toml}");
    let promoted = toml.replace(
        "pull_requests = \"on-command\"",
        "pull_requests = \"always\"",
    );
    let sha = push_pr_commit(
        &story,
        "self-promote",
        number,
        &[
            ("bakery.toml", &promoted),
            ("recipes/sandbox-base/files/motd", "Built on every push.\n"),
        ],
    );
    story.github.set_pull(
        REPO,
        number,
        PullState {
            head_sha: sha.clone(),
            head_ref: "self-promote".into(),
            head_repo: REPO.into(),
            base_ref: "main".into(),
            author: "dev".into(),
            state: "open".into(),
        },
    );
    let opened = pr_payload(&story, "opened", number, &sha, "self-promote", REPO, "dev");
    let job = deliver_and_wait(&story, "pull_request", "self-promote", &opened).await;
    assert_job_succeeded(&story, &job).await;
    assert!(
        story.proxy.calls("RunInstances").is_empty(),
        "nothing built"
    );
    let result = job.result.clone().unwrap();
    assert_eq!(result["valid"], true, "{result}");
    let reason = result["no_build"].as_str().unwrap_or_default();
    assert!(
        reason.contains("bakery.toml on main sets pull_requests = \"on-command\""),
        "{result}"
    );
    story.assert_no_github_violations();
}

/// Text outside Markdown code spans and blocks: where a mention would notify.
fn outside_code(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|c| *c == '`').count();
        let fence = "`".repeat(run);
        let after = &rest[start + run..];
        match after.find(&fence) {
            Some(end) => rest = &after[end + run..],
            None => {
                out.push_str(&rest[start..]);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Anyone can comment on a public pull request. A command crafted to break out of
/// bakery's quoting gets an answer that mentions nobody. Commands that need no
/// permission are answered a few times per pull request, then no more until the window
/// passes: a comment flood cannot make bakery spam the thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unprivileged_commands_mention_nobody_and_are_rate_limited() {
    let story = Story::start().await;
    let number = 14;
    let crafted = "/bakery x`@acme/security-team`";
    let ask = comment_payload(&story, number, 9399, "hubot", crafted);
    let job = deliver_and_wait(&story, "issue_comment", "crafted", &ask).await;
    assert_job_succeeded(&story, &job).await;
    let (author, answer) = pr_comments(&story, number).last().unwrap().clone();
    assert_eq!(author, BOT);
    assert!(answer.contains("is not a bakery command"), "{answer}");
    assert!(
        !outside_code(&answer).contains("@acme"),
        "the answer mentions the team: {answer}"
    );
    let limit = bakery::jobs::command::UNPRIVILEGED_PER_PR;
    for i in 1..limit + 2 {
        let ask = comment_payload(&story, number, 9400 + i as u64, "hubot", "/bakery help");
        let job = deliver_and_wait(&story, "issue_comment", &format!("help-{i}"), &ask).await;
        assert_job_succeeded(&story, &job).await;
        let limited = job.result.as_ref().unwrap()["rate_limited"] == true;
        assert_eq!(limited, i >= limit, "comment {i}: {:?}", job.result);
    }
    let answers = pr_comments(&story, number)
        .into_iter()
        .filter(|(author, _)| author == BOT)
        .count();
    assert_eq!(answers, limit);
    story.assert_no_github_violations();
}
