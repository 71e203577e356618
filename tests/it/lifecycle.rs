//! Retiring releases: after two releases, `bakery lifecycle` with `keep = 1` spares the
//! older release while a channel points at it, prints its plan on a dry run without
//! changing anything, and once the channel moves deregisters the older release in every
//! account and region, with its snapshots and version parameters, and says so in its
//! release job's log. Every call passes the IAM oracle over `deploy/aws/`.

use std::process::Output;

use serde_json::Value;

use crate::registry::{images_env, release, HostKeys};
use crate::support::bakery_process::bakery_bin;
use crate::support::story::*;

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"ami-[0-9a-f]{8,17}", "ami-[id]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
    ]
}

async fn bakery(story: &Story, command: &str, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(bakery_bin())
        .arg(command)
        .args(args)
        .envs(images_env(story))
        .env_remove("BAKERY_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "bakery {command} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn lifecycle(story: &Story, extra: &[&str]) -> String {
    let work = story.work.display().to_string();
    let mut args = vec!["--repo", work.as_str(), "--repository", REPO];
    args.extend_from_slice(extra);
    let out = bakery(story, "lifecycle", &args).await;
    String::from_utf8(out.stdout).unwrap()
}

/// `version → [(account, region, image id, state)]` as `bakery images` reads them.
async fn images(story: &Story) -> Vec<(String, String, String, String, String)> {
    let out = bakery(story, "images", &["--format", "json"]).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (
                s("version"),
                s("account"),
                s("region"),
                s("image_id"),
                s("state"),
            )
        })
        .collect()
}

fn retire_calls(story: &Story) -> usize {
    [
        "DeregisterImage",
        "DeleteSnapshot",
        "DeleteParameter",
        "EnableImageDeprecation",
        "ModifyImageAttribute",
    ]
    .iter()
    .map(|a| story.proxy.calls(a).len())
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_one_deregisters_the_older_release_once_no_channel_points_at_it() {
    let story = Story::start().await;
    let host_keys = HostKeys::save(&story);
    release(&story, "release-0.1.0").await;
    host_keys.restore();
    release(&story, "release-0.2.0").await;

    // The default branch: keep one release; production still runs the older one.
    let config = std::fs::read_to_string(story.work.join("bakery.toml")).unwrap();
    story.commit(
        &[
            (
                "bakery.toml",
                &format!("{config}\n[lifecycle]\nkeep = 1\ngrace_period = \"1s\"\n"),
            ),
            (
                "channels.toml",
                "production = { sandbox-base = \"release-0.1.0\" }\n",
            ),
        ],
        "chore: keep one release",
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = images(&story).await;
    assert_eq!(before.len(), 2 * story_targets().len(), "{before:#?}");
    let calls_before = retire_calls(&story);

    // The channel's image stays, dry run or not.
    let spared = lifecycle(&story, &["--dry-run"]).await;
    let applied = lifecycle(&story, &[]).await;
    assert_eq!(
        retire_calls(&story),
        calls_before,
        "a channel's image was touched"
    );
    assert_eq!(images(&story).await, before);
    for t in story_targets() {
        assert!(
            spared.lines().any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.starts_with(&["keep", "sandbox-base", "release-0.1.0"])
                    && cells[3] == t.account
                    && cells[4] == t.region
                    && l.contains("channel production points at it")
            }),
            "release-0.1.0 in {t} is not kept for its channel:\n{spared}"
        );
    }
    assert!(applied.contains("0 of 0 image(s) retired"), "{applied}");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("lifecycle_spares_the_channel_image", spared);
    });

    // Production moves on: the older release goes. The dry run plans it and changes nothing.
    story.commit(
        &[(
            "channels.toml",
            "production = { sandbox-base = \"release-0.2.0\" }\n",
        )],
        "chore: promote release-0.2.0",
    );
    let plan = lifecycle(&story, &["--dry-run"]).await;
    let plan_json: Value =
        serde_json::from_str(&lifecycle(&story, &["--dry-run", "--format", "json"]).await).unwrap();
    assert_eq!(
        retire_calls(&story),
        calls_before,
        "the dry run changed something"
    );
    assert_eq!(images(&story).await, before);
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("lifecycle_dry_run_plan", plan);
    });
    let entries = plan_json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{plan_json:#}");
    assert_eq!(entries[0]["version"], "release-0.1.0");
    assert_eq!(entries[0]["verdict"], "retire");
    assert_eq!(entries[0]["action"], "deregister");
    assert_eq!(entries[0]["why"]["rule"], "keep");
    assert_eq!(
        entries[0]["copies"].as_array().unwrap().len(),
        story_targets().len()
    );

    // The snapshots behind each older image, to see them go.
    let mut snapshots = vec![];
    for (version, account, region, image_id, _) in &before {
        if version != "release-0.1.0" {
            continue;
        }
        let t = target(account, region);
        let found = story
            .check
            .ec2(&t)
            .unwrap()
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .unwrap();
        let ids: Vec<String> = found.images()[0]
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect();
        assert!(!ids.is_empty(), "{image_id} has snapshots");
        snapshots.push((t, ids));
    }

    let done = lifecycle(&story, &[]).await;
    assert!(
        done.contains(&format!(
            "{n} of {n} image(s) retired",
            n = story_targets().len()
        )),
        "{done}"
    );
    let after = images(&story).await;
    for (version, account, region, _, state) in &after {
        let want = if version == "release-0.1.0" {
            "deregistered"
        } else {
            "available"
        };
        assert_eq!(state, want, "{version} in {account}/{region}: {after:#?}");
    }
    for (t, ids) in &snapshots {
        let left = story
            .check
            .ec2(t)
            .unwrap()
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .unwrap();
        for id in ids {
            assert!(
                left.snapshots()
                    .iter()
                    .all(|s| s.snapshot_id() != Some(id.as_str())),
                "snapshot {id} in {t} outlived its image"
            );
        }
    }
    for t in story_targets() {
        let ssm = story.check.ssm(&t).unwrap();
        let old = format!("/bakery/{REPO}/sandbox-base/versions/release-0.1.0");
        let new = format!("/bakery/{REPO}/sandbox-base/versions/release-0.2.0");
        assert!(
            ssm.get_parameter().name(&old).send().await.is_err(),
            "{old} in {t} outlived its image"
        );
        let kept = ssm.get_parameter().name(&new).send().await.unwrap();
        assert!(kept
            .parameter()
            .unwrap()
            .value()
            .unwrap()
            .starts_with("ami-"));
    }
    // DeregisterImage asked EC2 to take the snapshots along.
    let deregs = story.proxy.calls("DeregisterImage");
    assert!(
        deregs
            .iter()
            .filter(|c| before
                .iter()
                .any(|b| b.0 == "release-0.1.0" && Some(b.3.as_str()) == c.param("ImageId")))
            .all(|c| c.param("DeleteAssociatedSnapshots") == Some("true")),
        "{deregs:#?}"
    );

    // Every action is in the log of the older release's job.
    let job = story
        .jobs()
        .await
        .into_iter()
        .find(|j| j.git_ref.ends_with("release-0.1.0"))
        .unwrap();
    let log = story.job_log(job.id).await;
    let retired: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sandbox-base@release-0.1.0") && l.contains("deregistered with"))
        .collect();
    assert_eq!(retired.len(), story_targets().len(), "{log}");

    // Nothing left to do: a second run retires nothing.
    let again = lifecycle(&story, &[]).await;
    assert!(
        again.contains("the lifecycle rules retire nothing"),
        "{again}"
    );
}
