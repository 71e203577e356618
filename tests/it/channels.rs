//! Channels as code, after two releases: a merge to the default branch that changes
//! `channels.toml` moves the channel parameters and tags in every account and region,
//! and GitHub shows a deployment per channel and a check run of what moved; a reconcile
//! that finds everything in place changes nothing; a revocation deprecates the release,
//! takes it out of its channel, marks its version parameter, and a build on it refuses
//! to start; `bakery promote` moves a channel by hand and says the file is the truth.
//!
//! On the server's own timer, with the channels and the lifecycle rules in `bakery.toml`:
//! the scheduled reconcile puts back what a break-glass promote moved (and says nothing
//! on GitHub when everything is in place), and the lifecycle rules retire the older
//! release once the file moves its channel on.

use serde_json::Value;

use crate::registry::{bakery_images, images_env, release, HostKeys, OPERATOR};
use crate::support::bakery_process::bakery_bin;
use crate::support::story::*;
use bakery::aws::Target;

const REASON: &str = "CVE-2026-12345: openssl";

/// Commits `channels.toml` on `main`, delivers the push GitHub sends for it, and waits
/// for the reconcile job. Returns the job and the commit.
async fn merge_channels(
    story: &Story,
    text: &str,
    delivery: &str,
) -> (bakery::database::Job, String) {
    merge(story, &[("channels.toml", text)], delivery).await
}

/// Commits `files` on `main`, delivers the push GitHub sends for it, and waits for the
/// reconcile job. Returns the job and the commit.
async fn merge(
    story: &Story,
    files: &[(&str, &str)],
    delivery: &str,
) -> (bakery::database::Job, String) {
    let before = story.head();
    let sha = story.commit(files, "chore: move the channels");
    let (status, body) = story
        .deliver("push", delivery, &story.branch_push_payload(&before))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story
        .jobs()
        .await
        .into_iter()
        .find(|j| j.kind == bakery::database::JobKind::Reconcile && j.sha == sha)
        .unwrap_or_else(|| panic!("a reconcile job for {sha}: {body}"));
    let job = story.wait_for_job(job.id).await;
    (job, sha)
}

/// `bakery promote sandbox-base VERSION CHANNEL`, which must succeed; returns its stdout.
async fn promote(story: &Story, version: &str, channel: &str) -> String {
    let out = tokio::process::Command::new(bakery_bin())
        .args(["promote", "sandbox-base", version, channel])
        .envs(images_env(story))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every image of the story's recipe, by (account, region, version).
async fn images(story: &Story) -> Vec<Value> {
    let out = bakery_images(story, &["--format", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["images"].as_array().unwrap().clone()
}

fn image_in<'a>(images: &'a [Value], t: &Target, version: &str) -> &'a Value {
    images
        .iter()
        .find(|i| {
            i["account"] == t.account.as_str()
                && i["region"] == t.region.as_str()
                && i["version"] == version
        })
        .unwrap_or_else(|| panic!("{version} in {t}"))
}

async fn channel_parameter(story: &Story, t: &Target, channel: &str) -> Option<(String, String)> {
    let name = format!("/bakery/{REPO}/sandbox-base/channels/{channel}");
    let got = story
        .check
        .ssm(t)
        .unwrap()
        .get_parameter()
        .name(&name)
        .send()
        .await
        .ok()?;
    let p = got.parameter().unwrap();
    Some((
        p.value().unwrap_or_default().to_string(),
        p.data_type().unwrap_or_default().to_string(),
    ))
}

fn reconcile_runs(story: &Story, sha: &str) -> Vec<Value> {
    story
        .github
        .repo(REPO)
        .check_runs
        .values()
        .filter(|r| r.current["name"] == "bakery/reconcile" && r.current["head_sha"] == sha)
        .map(|r| r.current.clone())
        .collect()
}

fn cloud_changes(story: &Story) -> usize {
    [
        "PutParameter",
        "CreateTags",
        "DeleteTags",
        "DeleteParameter",
        "EnableImageDeprecation",
        "AddTagsToResource",
    ]
    .iter()
    .map(|a| story.proxy.calls(a).len())
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_channels_change_moves_revokes_and_promote_overrides() {
    let story =
        Story::start_with_env(|_, _| {}, &[("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR)]).await;
    let host_keys = HostKeys::save(&story);
    release(&story, "release-0.1.0").await;
    host_keys.restore();
    release(&story, "release-0.2.0").await;

    // The merge: production on 0.1.0, staging on 0.2.0.
    let (job, sha) = merge_channels(
        &story,
        "production = { sandbox-base = \"release-0.1.0\" }\n\
         staging = { sandbox-base = \"release-0.2.0\" }\n",
        "merge-1",
    )
    .await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    let all = images(&story).await;
    for t in story_targets() {
        for (channel, version) in [
            ("production", "release-0.1.0"),
            ("staging", "release-0.2.0"),
        ] {
            let image = image_in(&all, &t, version);
            let (value, data_type) = channel_parameter(&story, &t, channel)
                .await
                .unwrap_or_else(|| panic!("no {channel} parameter in {t}\n{log}"));
            assert_eq!(
                value,
                image["image_id"].as_str().unwrap(),
                "{channel} in {t}"
            );
            assert_eq!(data_type, "aws:ec2:image");
            assert_eq!(
                image["channels"],
                serde_json::json!([channel]),
                "{t}: {image:#}"
            );
        }
    }
    let repo = story.github.repo(REPO);
    let mut environments: Vec<(String, Vec<String>)> = repo
        .deployments
        .values()
        .map(|(d, statuses)| {
            assert_eq!(d["sha"], sha.as_str());
            (
                d["environment"].as_str().unwrap().to_string(),
                statuses
                    .iter()
                    .map(|s| s["state"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    environments.sort();
    assert_eq!(
        environments,
        vec![
            ("production".to_string(), vec!["success".to_string()]),
            ("staging".to_string(), vec!["success".to_string()])
        ]
    );
    let runs = reconcile_runs(&story, &sha);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["conclusion"], "success");
    assert!(
        runs[0]["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("| production | `sandbox-base` | — | `release-0.1.0` |"),
        "{:#}",
        runs[0]["output"]
    );

    // The same channels again (a comment changed): nothing to do, nothing done.
    let changes = cloud_changes(&story);
    let (job, sha) = merge_channels(
        &story,
        "# Where each recipe runs.\n\
         production = { sandbox-base = \"release-0.1.0\" }\n\
         staging = { sandbox-base = \"release-0.2.0\" }\n",
        "merge-2",
    )
    .await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(
        cloud_changes(&story),
        changes,
        "an idle reconcile changed the cloud\n{log}"
    );
    assert_eq!(
        story.github.repo(REPO).deployments.len(),
        2,
        "no new deployment"
    );
    let runs = reconcile_runs(&story, &sha);
    assert_eq!(
        runs[0]["output"]["title"],
        "channels in place: nothing to change"
    );

    // The revocation: 0.1.0 leaves production, which moves to 0.2.0.
    let (job, _) = merge_channels(
        &story,
        &format!(
            "production = {{ sandbox-base = \"release-0.2.0\" }}\n\
             staging = {{ sandbox-base = \"release-0.2.0\" }}\n\
             [revoked]\n\"sandbox-base@release-0.1.0\" = \"{REASON}\"\n"
        ),
        "merge-3",
    )
    .await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    let all = images(&story).await;
    for t in story_targets() {
        let revoked = image_in(&all, &t, "release-0.1.0");
        assert_eq!(revoked["state"], "revoked", "{t}: {revoked:#}");
        assert_eq!(revoked["revoked_reason"], REASON);
        assert_eq!(
            revoked["channels"],
            serde_json::json!([]),
            "{t}: {revoked:#}"
        );
        // moto keeps no deprecation time: the proxy's record of the call is the evidence.
        let deprecated = story
            .proxy
            .calls("EnableImageDeprecation")
            .into_iter()
            .filter(|c| c.param("ImageId") == revoked["image_id"].as_str())
            .filter(|c| {
                // Now (EC2's nearest: a minute ahead), not the release's own schedule.
                c.param("DeprecateAt")
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                    .is_some_and(|at| at < chrono::Utc::now() + chrono::Duration::minutes(5))
            })
            .count();
        assert_eq!(deprecated, 1, "{t}: 0.1.0 is deprecated now, once");
        let current = image_in(&all, &t, "release-0.2.0");
        let (value, _) = channel_parameter(&story, &t, "production").await.unwrap();
        assert_eq!(
            value,
            current["image_id"].as_str().unwrap(),
            "production in {t}"
        );
        let tags = story
            .check
            .ssm(&t)
            .unwrap()
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(format!(
                "/bakery/{REPO}/sandbox-base/versions/release-0.1.0"
            ))
            .send()
            .await
            .unwrap();
        assert!(
            tags.tag_list()
                .iter()
                .any(|x| x.key() == "bakery:revoked" && x.value() == REASON),
            "{t}: {tags:?}"
        );
    }

    // A build on the revoked release refuses to start, and names the reason.
    std::fs::create_dir_all(story.work.join("recipes/sandbox-app")).unwrap();
    std::fs::write(
        story.work.join("recipes/sandbox-app/recipe.toml"),
        "description = \"An app on the base\"\n\
         [source]\nrecipe = \"sandbox-base\"\nversion = \"release-0.1.0\"\n\
         [builder]\ninstance_type = \"t3.micro\"\nssh_user = \"builder\"\n\
         [[provision]]\ntype = \"shell\"\ninline = [\"true\"]\n",
    )
    .unwrap();
    let launched = story.proxy.calls("RunInstances").len();
    let child = tokio::process::Command::new(bakery_bin())
        .args([
            "build",
            "sandbox-app",
            "--version",
            "child-1",
            "--provisioner",
            "none",
        ])
        .arg("--repo")
        .arg(&story.work)
        .args(["--repository", REPO])
        .envs(images_env(&story))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        !child.status.success(),
        "a child of a revoked release built"
    );
    assert!(
        stderr.contains("is revoked") && stderr.contains(REASON),
        "{stderr}"
    );
    assert_eq!(
        story.proxy.calls("RunInstances").len(),
        launched,
        "the refused build launched a builder"
    );

    // Break-glass: promote moves canary now, and says the file is the truth.
    let stdout = promote(&story, "release-0.2.0", "canary").await;
    assert!(stdout.contains("source of truth"), "{stdout}");
    let all = images(&story).await;
    for t in story_targets() {
        let (value, _) = channel_parameter(&story, &t, "canary").await.unwrap();
        assert_eq!(
            value,
            image_in(&all, &t, "release-0.2.0")["image_id"]
                .as_str()
                .unwrap()
        );
    }
    // A revoked release cannot be promoted.
    let refused = tokio::process::Command::new(bakery_bin())
        .args(["promote", "sandbox-base", "release-0.1.0", "canary"])
        .envs(images_env(&story))
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());

    assert!(
        story.github.violations().is_empty(),
        "{:#?}",
        story.github.violations()
    );
}

fn scheduled_reconciles(jobs: &[bakery::database::Job]) -> Vec<&bakery::database::Job> {
    jobs.iter()
        .filter(|j| {
            j.kind == bakery::database::JobKind::Reconcile && j.payload["trigger"] == "schedule"
        })
        .collect()
}

async fn production_everywhere(story: &Story, version: &str) -> bool {
    let all = images(story).await;
    for t in story_targets() {
        let want = image_in(&all, &t, version)["image_id"].clone();
        match channel_parameter(story, &t, "production").await {
            Some((value, _)) if want == value.as_str() => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_timer_restores_a_promoted_channel_and_retires_the_release_the_file_let_go() {
    let story = Story::start_with_env(
        |_, _| {},
        &[
            ("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR),
            ("BAKERY_AWS__JANITOR_INTERVAL_SECS", "2"),
        ],
    )
    .await;
    let host_keys = HostKeys::save(&story);
    release(&story, "release-0.1.0").await;
    host_keys.restore();
    release(&story, "release-0.2.0").await;

    // The channels and the rules live in bakery.toml: production on the older release,
    // keep one release.
    let config = std::fs::read_to_string(story.work.join("bakery.toml")).unwrap();
    let with = |version: &str| {
        format!(
            "{config}\n[lifecycle]\nkeep = 1\ngrace_period = \"1s\"\n\n\
             [channels]\nproduction = {{ sandbox-base = \"{version}\" }}\n"
        )
    };
    let (job, sha) = merge(
        &story,
        &[("bakery.toml", &with("release-0.1.0"))],
        "merge-1",
    )
    .await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert!(
        log.contains("reconciling [channels] in bakery.toml"),
        "{log}"
    );
    assert!(
        production_everywhere(&story, "release-0.1.0").await,
        "production does not point at release-0.1.0 everywhere\n{log}"
    );
    assert_eq!(reconcile_runs(&story, &sha).len(), 1);

    // Break-glass: production moves to the newer release by hand...
    let puts_before = story.proxy.calls("PutParameter").len();
    let stdout = promote(&story, "release-0.2.0", "production").await;
    assert!(stdout.contains("scheduled reconcile"), "{stdout}");
    assert!(
        story.proxy.calls("PutParameter").len() >= puts_before + story_targets().len(),
        "promote moved nothing"
    );

    // ...and the server's timer puts it back where bakery.toml says, reported on the
    // default branch's head like a push's reconcile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let jobs = story.jobs().await;
        let restored = scheduled_reconciles(&jobs).into_iter().any(|j| {
            j.result
                .as_ref()
                .is_some_and(|r| r["changes"].as_u64() > Some(0))
        });
        if restored && production_everywhere(&story, "release-0.1.0").await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled reconcile put production back: {:#?}",
            scheduled_reconciles(&jobs)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // (A tick can land while promote is half done: then two ticks share the restore.)
    let runs = reconcile_runs(&story, &sha);
    assert!(runs.len() >= 2, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r["conclusion"] == "success"),
        "{runs:#?}"
    );

    // Everything in place (a tick that landed while promote was half done leaves the
    // rest to the next one): once a tick finds nothing to do, later ticks change nothing
    // and say nothing.
    let changes = |j: &bakery::database::Job| j.result.as_ref().and_then(|r| r["changes"].as_u64());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let settled = loop {
        let jobs = story.jobs().await;
        let ticks = scheduled_reconciles(&jobs);
        let last_change = ticks
            .iter()
            .filter(|j| changes(j) > Some(0))
            .map(|j| j.id)
            .max()
            .unwrap();
        if let Some(quiet) = ticks
            .iter()
            .find(|j| j.id > last_change && changes(j) == Some(0))
        {
            break quiet.id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the channels never settled: {ticks:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let (puts, quiet_runs) = (
        story.proxy.calls("PutParameter").len(),
        reconcile_runs(&story, &sha).len(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while scheduled_reconciles(&story.jobs().await)
        .iter()
        .filter(|j| j.id > settled && j.state == bakery::database::JobState::Succeeded)
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "the timer stopped");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(story.proxy.calls("PutParameter").len(), puts);
    if reconcile_runs(&story, &sha).len() != quiet_runs {
        let mut logs = String::new();
        for j in scheduled_reconciles(&story.jobs().await) {
            if j.result
                .as_ref()
                .is_some_and(|r| r["changes"].as_u64() > Some(0))
            {
                logs.push_str(&story.job_log(j.id).await);
            }
        }
        panic!("a quiet tick reported on GitHub:\n{logs}");
    }

    // The file moves production on: the timer's lifecycle rules retire the older release
    // everywhere, and say so in its release job's log.
    let (job, _) = merge(
        &story,
        &[("bakery.toml", &with("release-0.2.0"))],
        "merge-2",
    )
    .await;
    story.assert_succeeded(&job, &story.job_log(job.id).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let all = images(&story).await;
        let states: Vec<(String, String)> = all
            .iter()
            .filter(|i| i["version"] == "release-0.1.0")
            .map(|i| {
                (
                    format!("{}/{}", i["account"], i["region"]),
                    i["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        if states.len() == story_targets().len() && states.iter().all(|s| s.1 == "deregistered") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timer did not retire release-0.1.0: {states:#?}\n{}",
            story.bakery.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for t in story_targets() {
        let (value, _) = channel_parameter(&story, &t, "production").await.unwrap();
        assert_eq!(
            value,
            image_in(&images(&story).await, &t, "release-0.2.0")["image_id"]
                .as_str()
                .unwrap(),
            "production in {t}"
        );
    }
    let old = story
        .jobs()
        .await
        .into_iter()
        .find(|j| j.git_ref.ends_with("release-0.1.0"))
        .unwrap();
    let log = story.job_log(old.id).await;
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("sandbox-base@release-0.1.0") && l.contains("deregistered with"))
            .count(),
        story_targets().len(),
        "{log}"
    );
    assert!(
        story.github.violations().is_empty(),
        "{:#?}",
        story.github.violations()
    );
}
