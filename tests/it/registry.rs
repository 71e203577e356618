//! The image registry: `bakery images` and `GET /api/images` read what bakery released
//! from the cloud's tags, in every account and region, after two releases; each
//! release's version parameter is read back from Parameter Store in every target.

use std::process::Output;

use serde_json::Value;

use crate::support::bakery_process::{bakery_bin, http};
use crate::support::story::*;

pub const OPERATOR: &str = "registry-operator-token-0123456789";

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"ami-[0-9a-f]{8,17}", "ami-[id]"),
        (r"\b[0-9a-f]{40}\b", "[sha]"),
        (r"\b[0-9a-f]{7}\b", "[short-sha]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[uuid]",
        ),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
    ]
}

/// The builder's SSH host keys, as a fresh instance gets them at boot: the seal step of
/// a build removes them from the sandbox that plays every builder, so they are put back
/// before the next build.
pub struct HostKeys(Vec<(std::path::PathBuf, Vec<u8>, std::fs::Metadata)>);

impl HostKeys {
    pub fn save(story: &Story) -> HostKeys {
        let dir = story.sandbox.path("/etc/ssh");
        let mut keys = vec![];
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ssh_host_")
            {
                let meta = std::fs::metadata(&path).unwrap();
                keys.push((path.clone(), std::fs::read(&path).unwrap(), meta));
            }
        }
        assert!(!keys.is_empty(), "the sandbox has host keys");
        HostKeys(keys)
    }

    pub fn restore(&self) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        for (path, bytes, meta) in &self.0 {
            std::fs::write(path, bytes).unwrap();
            std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode())).unwrap();
        }
    }
}

/// Pushes `tag` on a new commit and waits for its release job to succeed.
pub async fn release(story: &Story, tag: &str) {
    story.commit(
        &[("docs/release.md", &format!("{tag}\n"))],
        &format!("chore: prepare {tag}"),
    );
    let pushed = story.push_tag(tag, TagKind::Annotated);
    let (status, body) = story
        .deliver(
            "push",
            &format!("delivery-{tag}"),
            &story.push_payload(&pushed),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story
        .jobs()
        .await
        .into_iter()
        .find(|j| j.git_ref.ends_with(tag))
        .unwrap_or_else(|| panic!("a job for {tag}"));
    let job = story.wait_for_job(job.id).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
}

/// The environment `bakery images` needs: the operator's configuration (store, AWS
/// endpoint, the other account's role), as `bakery serve` has it.
pub fn images_env(story: &Story) -> Vec<(String, String)> {
    let mut env = story.aws_env();
    env.push((
        "BAKERY_DATABASE_URL".into(),
        story.bakery_database_url().into(),
    ));
    env.push((
        format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__ROLE_ARN"),
        other_account().role_arn,
    ));
    env.push((
        format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__EXTERNAL_ID"),
        crate::support::iam_oracle::TARGET_EXTERNAL_ID.into(),
    ));
    env
}

pub async fn bakery_images(story: &Story, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(bakery_bin())
        .arg("images")
        .args(args)
        .envs(images_env(story))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "bakery images {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_lists_two_releases_in_every_target() {
    let story =
        Story::start_with_env(|_, _| {}, &[("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR)]).await;
    let host_keys = HostKeys::save(&story);
    release(&story, "release-0.1.0").await;
    host_keys.restore();
    release(&story, "release-0.2.0").await;

    // Both formats, every account and region.
    let table = bakery_images(&story, &["--format", "table"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    let json = bakery_images(&story, &["--format", "json"]).await;
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), 2 * story_targets().len(), "{json:#}");
    for t in story_targets() {
        for v in ["release-0.1.0", "release-0.2.0"] {
            let here: Vec<&Value> = images
                .iter()
                .filter(|i| {
                    i["account"] == t.account.as_str()
                        && i["region"] == t.region.as_str()
                        && i["version"] == v
                })
                .collect();
            assert_eq!(here.len(), 1, "{v} in {t}: {json:#}");
            assert_eq!(here[0]["state"], "available");
            assert_eq!(here[0]["repo"], REPO);
            assert_eq!(here[0]["recipe"], "sandbox-base");
        }
    }
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("images_table", table);
        insta::assert_snapshot!("images_json", serde_json::to_string_pretty(&json).unwrap());
    });

    // The filters narrow: one version in one region is one image per account.
    let narrow = bakery_images(
        &story,
        &[
            "sandbox-base",
            "--version",
            "release-0.1.0",
            "--region",
            "eu-west-1",
            "--format",
            "json",
        ],
    )
    .await;
    let narrow: Value = serde_json::from_slice(&narrow.stdout).unwrap();
    let accounts: Vec<&str> = narrow["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, vec![HOME, OTHER], "{narrow:#}");
    let other = bakery_images(&story, &["--account", OTHER, "--format", "json"]).await;
    let other: Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(
        other["images"].as_array().unwrap().len(),
        2 * OTHER_REGIONS.len()
    );

    // The version parameters: one per version in every account and region, holding that
    // target's image, with the data type launch templates' `resolve:ssm:` reads.
    for t in story_targets() {
        let ssm = story.check.ssm(&t).unwrap();
        for v in ["release-0.1.0", "release-0.2.0"] {
            let name = format!("/bakery/{REPO}/sandbox-base/versions/{v}");
            let got = ssm
                .get_parameter()
                .name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name} in {t}: {e:?}"));
            let p = got.parameter().unwrap();
            let image = images
                .iter()
                .find(|i| {
                    i["account"] == t.account.as_str()
                        && i["region"] == t.region.as_str()
                        && i["version"] == v
                })
                .unwrap();
            assert_eq!(p.value(), image["image_id"].as_str(), "{name} in {t}");
            assert_eq!(p.data_type(), Some("aws:ec2:image"));
        }
    }

    // A user's own lookup by tag keeps working.
    let mine = story
        .check
        .ec2(&target(HOME, "eu-west-1"))
        .unwrap()
        .describe_images()
        .owners("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ImageVersion")
                .values("release-0.1.0")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mine.images().len(), 1);

    // The same listing over HTTP, for the operator only.
    let get = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let addr = story.bakery.addr;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http(addr, "GET", path, &h, b"").await.unwrap()
        }
    };
    let (status, _) = get(vec![], "/api/images").await;
    assert_eq!(status, 404, "no token, nothing");
    let (status, _) = get(
        vec![("Authorization", "Bearer not-the-operator-token".into())],
        "/api/images?recipe=sandbox-base",
    )
    .await;
    assert_eq!(status, 404, "a wrong token, nothing");
    let (status, body) = get(
        vec![("Authorization", format!("Bearer {OPERATOR}"))],
        "/api/images",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api, json, "the API serves what the command prints");
    let (status, body) = get(
        vec![("Authorization", format!("Bearer {OPERATOR}"))],
        "/api/images?version=release-0.2.0&account=222222222222",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["images"].as_array().unwrap().len(), OTHER_REGIONS.len());

    // An image removed by hand: the store still knows the release, the cloud does not.
    let gone = images
        .iter()
        .find(|i| i["version"] == "release-0.1.0" && i["region"] == "ap-southeast-2")
        .unwrap();
    story
        .check
        .ec2(&target(HOME, "ap-southeast-2"))
        .unwrap()
        .deregister_image()
        .image_id(gone["image_id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let after = bakery_images(&story, &["--region", "ap-southeast-2", "--format", "json"]).await;
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    let states: Vec<(&str, &str)> = after["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["version"].as_str().unwrap(), i["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("release-0.1.0", "deregistered"),
            ("release-0.2.0", "available")
        ]
    );

    channels_pull_request_gets_its_plan(&story).await;
}

/// A pull request that changes `channels.toml` gets the channels plan comment, planned
/// against what the cloud holds: a move to a released version in every account and
/// region, and a refusal of a version never released. Nothing moves before the merge.
async fn channels_pull_request_gets_its_plan(story: &Story) {
    use crate::pr_stories::{comments_with, deliver_and_wait, pr_payload, push_pr_commit};
    let number = 21;
    let channels = "production = { sandbox-base = \"release-0.2.0\" }\n\
                    staging = { sandbox-base = \"release-9.9.9\" }\n";
    let sha = push_pr_commit(story, "promote", number, &[("channels.toml", channels)]);
    let opened = pr_payload(story, "opened", number, &sha, "promote", REPO, "mona");
    let job = deliver_and_wait(story, "pull_request", "pr-channels-1", &opened).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    let plans = comments_with(story, number, bakery::github::render::CHANNELS_MARKER);
    assert_eq!(plans.len(), 1, "{plans:#?}\n{log}");
    let plan = &plans[0];
    assert!(
        plan.contains("`staging`: `sandbox-base@release-9.9.9` was never released"),
        "{plan}"
    );
    let row = plan
        .lines()
        .find(|l| l.starts_with("| production |"))
        .unwrap_or_else(|| panic!("no production row: {plan}"));
    assert!(row.contains("`release-0.2.0`"), "{row}");
    for t in story_targets() {
        assert!(row.contains(&t.region), "{row} lacks {t}");
    }
    assert!(row.contains(HOME) && row.contains(OTHER), "{row}");
    // The refusal fails the check run on the pull request's head, so it cannot merge.
    let runs: Vec<_> = story
        .github
        .repo(REPO)
        .check_runs
        .values()
        .filter(|r| r.current["name"] == "bakery/channels" && r.current["head_sha"] == sha)
        .cloned()
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].current["conclusion"], "failure");
    assert!(
        story
            .proxy
            .calls("PutParameter")
            .iter()
            .all(|c| !c.param("Name").unwrap_or_default().contains("/channels/")),
        "a pull request moved a channel"
    );
}

/// `GET /api/images` opens to the operator's token only: no token, a wrong one, a job
/// link's token, or a server without an operator token all get 404, before the query is
/// even read. The operator's malformed query is a 400, and nothing reached AWS.
#[tokio::test]
async fn the_image_api_is_for_the_operator_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bakery.db", dir.path().display());
    let base = [
        ("BAKERY_WEBHOOK__SECRETS", "registry-webhook-secret"),
        ("BAKERY_DATABASE_URL", db.as_str()),
        ("BAKERY_WORKERS__CONCURRENCY", "0"),
        ("BAKERY_JOB_PAGES__KEY", "registry-job-page-key-0123456789"),
        // Nothing answers here: a call to AWS would fail the request with 503.
        ("BAKERY_AWS__ENDPOINT_URL", "http://127.0.0.1:9"),
    ];
    let mut with_operator = base.to_vec();
    with_operator.push(("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR));
    let server =
        crate::support::bakery_process::BakeryServer::start(dir.path(), &with_operator).await;
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let addr = server.addr;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http(addr, "GET", path, &h, b"").await.unwrap()
        }
    };
    for (path, headers) in [
        ("/api/images", vec![]),
        ("/api/images?owner=someone", vec![]),
        (
            "/api/images",
            vec![(
                "Authorization",
                "Bearer registry-job-page-key-0123456789".to_string(),
            )],
        ),
        (
            "/api/images",
            vec![("Authorization", format!("Bearer {OPERATOR}x"))],
        ),
        ("/api/images?token=0000", vec![]),
    ] {
        let (status, body) = get(path, headers.clone()).await;
        assert_eq!(status, 404, "{path} {headers:?}: {body}");
    }
    let (status, body) = get(
        "/api/images?owner=someone",
        vec![("Authorization", format!("Bearer {OPERATOR}"))],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    drop(server);

    // Without an operator token configured, nobody opens it.
    let dir2 = tempfile::tempdir().unwrap();
    let db2 = format!("sqlite://{}/bakery.db", dir2.path().display());
    let mut without = base.to_vec();
    without[1] = ("BAKERY_DATABASE_URL", db2.as_str());
    let server = crate::support::bakery_process::BakeryServer::start(dir2.path(), &without).await;
    let (status, _) = http(
        server.addr,
        "GET",
        "/api/images",
        &[("Authorization", "Bearer ")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 404);
}
