//! The real `bakery serve` stopping and starting mid-build, alone and as replicas: a
//! deploy's SIGTERM hands a nearly finished release over to the next process instead of
//! throwing it away, and replicas on PostgreSQL survive one of them being killed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bakery::database::{BuildFilter, BuildState, JobFilter, JobState};

use crate::support::bakery_process::http;
use crate::support::examples::sign;
use crate::support::stores::TestStore;
use crate::support::story::{story_targets, Story, TagKind, REPO, WEBHOOK_SECRET};

/// A deploy stops `bakery serve` with SIGTERM while a release is distributing its copies.
/// The build is handed over as it is: nothing it made is deleted, and the hand-back does
/// not count as one of the job's attempts. The new process resumes the build, adopts what
/// was made, takes over the check run, and the release ends with one image per target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_distribution_hands_the_release_over() {
    let mut story = Story::start().await;
    let pushed = story.push_tag("release-0.2.0", TagKind::Annotated);
    let (status, body) = story
        .deliver("push", "handover-delivery-1", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");

    // Wait until the build distributes (its intermediate image exists), then deploy.
    let started = Instant::now();
    let build_id = loop {
        let running = story
            .store
            .list_builds(&BuildFilter {
                state: Some(BuildState::Running),
                ..BuildFilter::default()
            })
            .await
            .unwrap();
        let mut distributing = None;
        for b in running {
            let journal = story.store.journal(&b.build_id).await.unwrap();
            if journal
                .iter()
                .any(|e| e.kind == "step_started" && e.data["step"] == "distribute")
            {
                distributing = Some(b.build_id);
            }
        }
        if let Some(id) = distributing {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the build never reached distribute:\n{}",
            story.bakery.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = story.bakery.terminate();
    assert!(status.success(), "{status:?}\n{}", story.bakery.log_text());

    let job = story.jobs().await.pop().unwrap();
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Queued, 0),
        "handed back, no attempt used: {job:?}"
    );
    let build = story.store.get_build(&build_id).await.unwrap().unwrap();
    assert_eq!(
        build.state,
        BuildState::Running,
        "the build was not thrown away: {build:?}\n{}",
        story.bakery.log_text()
    );
    let journal = story.store.journal(&build_id).await.unwrap();
    assert!(
        journal.iter().any(|e| e.kind == "handed_over"),
        "{journal:#?}"
    );
    // The builder is terminated as soon as the intermediate holds its work, before
    // distribution; everything else the build made is kept for the next owner.
    assert!(
        !journal
            .iter()
            .any(|e| e.kind == "deleted" && e.data["type"] != "instance"),
        "nothing the build made but its builder was deleted: {journal:#?}"
    );

    // The next process resumes it.
    story.bakery = story.bakery.restarted().await;
    let job = story.wait_for_job(job.id).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(job.attempts, 1, "{job:?}");
    assert!(
        log.contains(&format!("resuming build {build_id}")),
        "the new process resumed the handed-over build:\n{log}"
    );
    let build = story.store.get_build(&build_id).await.unwrap().unwrap();
    assert_eq!(build.state, BuildState::Succeeded);
    let builds = story
        .store
        .list_builds(&BuildFilter::default())
        .await
        .unwrap();
    assert_eq!(builds.len(), 1, "no second build: {builds:#?}");

    let mut finals = BTreeSet::new();
    for t in story_targets() {
        let images = story.images_named(&t, "sandbox-base-release-0.2.0").await;
        assert_eq!(images.len(), 1, "one image in {t}: {images:#?}");
        finals.insert(images[0].image_id().unwrap().to_string());
    }
    for t in story_targets() {
        let left = story.leftovers(&t, &finals).await;
        assert!(left.is_empty(), "left in {t}: {left:?}");
    }

    // One check run, taken over by the second process and completed.
    let repo = story.github.repo(REPO);
    let runs: Vec<_> = repo
        .check_runs
        .values()
        .filter(|r| r.current["name"] == "bakery/sandbox-base")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].current["status"], "completed");
    assert_eq!(runs[0].current["conclusion"], "success");
    story.assert_no_github_violations();
}

/// Three replicas of `bakery serve` on three hosts share one PostgreSQL store. A hundred
/// signed deliveries for three release tags (redeliveries among them) are spread across
/// them; one replica is killed with `kill -9` in the middle of a build. Every tag is
/// built exactly once, the killed replica's build is finished or cleaned up by another,
/// nothing is left in moto, and the periodic sync runs once per interval, not once per
/// replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_postgresql_survive_a_kill_9() {
    let mut story = Story::start_with(|files, _| {
        // Builds of different tags run at once on the one sandbox builder: each writes
        // its own version file, and none seals it (its host keys and keys are every build's).
        let recipe = files.get_mut("recipes/sandbox-base/recipe.toml").unwrap();
        *recipe = recipe.replace("/opt/app/VERSION", "/opt/app/VERSION-{{ version }}")
            + "\n[seal]\nenabled = false\n";
    })
    .await;
    let _ = story.bakery.terminate();
    let pg = TestStore::postgres().await;
    let store = pg.store.clone();
    let tags = ["release-1.0.0", "release-1.0.1", "release-1.0.2"];
    let mut pushed = vec![];
    for tag in tags {
        pushed.push(story.push_tag(tag, TagKind::Annotated));
    }

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = vec![];
    for (i, host) in ["replica-a", "replica-b", "replica-c"].iter().enumerate() {
        let work = dirs[i].path().join("work");
        replicas.push(
            story
                .bakery
                .replica(
                    dirs[i].path(),
                    host,
                    &[
                        ("BAKERY_DATABASE_URL", pg.url.as_str()),
                        ("BAKERY_WORK_DIR", work.to_str().unwrap()),
                        ("BAKERY_WORKERS__CONCURRENCY", "1"),
                        ("BAKERY_WORKERS__LEASE_SECS", "5"),
                        ("BAKERY_WORKERS__BUILD_STALE_SECS", "5"),
                        ("BAKERY_GITHUB__SYNC_INTERVAL_SECS", "2"),
                    ],
                )
                .await,
        );
    }

    // 100 deliveries: 20 distinct pushes per tag, then 40 redeliveries of earlier ones,
    // round-robin over the replicas.
    let mut sends = vec![];
    for i in 0..100usize {
        let (delivery, tag) = if i < 60 {
            (format!("push-{i}"), i % 3)
        } else {
            let earlier = (i * 7) % 60;
            (format!("push-{earlier}"), earlier % 3)
        };
        let payload = story.push_payload(&pushed[tag]);
        sends.push((i % 3, delivery, payload));
    }
    let mut accepted = [0usize; 3];
    let answers = futures::future::join_all(
        sends
            .iter()
            .map(|(r, delivery, payload)| deliver(replicas[*r].addr, delivery, payload)),
    )
    .await;
    for ((r, delivery, _), (status, body)) in sends.iter().zip(answers) {
        assert!(
            status == 202 || status == 200,
            "{delivery} to replica {r}: {status} {body}"
        );
        accepted[*r] += 1;
    }
    println!("deliveries per replica: {accepted:?}");

    // Kill the replica that is in the middle of a build.
    let started = Instant::now();
    let (victim, crashed_build) = loop {
        let mut found = None;
        for b in store
            .list_builds(&BuildFilter {
                state: Some(BuildState::Running),
                ..BuildFilter::default()
            })
            .await
            .unwrap()
        {
            let journal = store.journal(&b.build_id).await.unwrap();
            let owner = journal.iter().rev().find(|e| e.kind == "owner");
            let provisioning = journal
                .iter()
                .any(|e| e.kind == "step_started" && e.data["step"] == "provision");
            if let (Some(owner), true) = (owner, provisioning) {
                let host = owner.data["host"].as_str().unwrap_or_default().to_string();
                found = Some((host, b.build_id.clone()));
            }
        }
        if let Some((host, build)) = found {
            let i = ["replica-a", "replica-b", "replica-c"]
                .iter()
                .position(|h| *h == host)
                .unwrap_or_else(|| panic!("a build owned by {host}"));
            break (i, build);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no build reached provisioning"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    replicas[victim].kill_9();
    println!("killed replica {victim} during build {crashed_build}");

    // Every tag ends with one job, succeeded.
    let deadline = Instant::now() + Duration::from_secs(600);
    let jobs = loop {
        let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
        if jobs.len() == 3 && jobs.iter().all(|j| j.state.is_finished()) {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish: {jobs:#?}\n{}",
            replicas
                .iter()
                .map(|r| r.log_text())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for j in &jobs {
        assert_eq!(
            j.state,
            JobState::Succeeded,
            "{j:#?}\n{}",
            replicas
                .iter()
                .map(|r| r.log_text())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
    let mut per_tag: Vec<&str> = jobs.iter().map(|j| j.git_ref.as_str()).collect();
    per_tag.sort();
    assert_eq!(per_tag, tags.to_vec(), "one job per tag");
    let builds = store.list_builds(&BuildFilter::default()).await.unwrap();
    for tag in tags {
        let succeeded = builds
            .iter()
            .filter(|b| b.version == tag && b.state == BuildState::Succeeded)
            .count();
        assert_eq!(succeeded, 1, "{tag}: {builds:#?}");
    }
    let crashed = store.get_build(&crashed_build).await.unwrap().unwrap();
    assert!(
        matches!(crashed.state, BuildState::Succeeded | BuildState::CleanedUp),
        "the killed replica's build was finished or cleaned up by another: {crashed:#?}"
    );
    println!(
        "the killed replica's build ended {}",
        crashed.state.as_str()
    );

    let mut finals = BTreeSet::new();
    for tag in tags {
        for t in story_targets() {
            let images = story.images_named(&t, &format!("sandbox-base-{tag}")).await;
            assert_eq!(images.len(), 1, "{tag}: one image in {t}: {images:#?}");
            finals.insert(images[0].image_id().unwrap().to_string());
        }
    }
    for t in story_targets() {
        let left = story.leftovers(&t, &finals).await;
        assert!(left.is_empty(), "left in {t}: {left:?}");
    }

    // The periodic sync (every 2 s) runs once per interval across the live replicas.
    let before = story.github.calls_of("repos/list-tags").len();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let runs = story.github.calls_of("repos/list-tags").len() - before;
    let intervals = window.elapsed().as_secs_f64() / 2.0;
    println!("periodic sync: {runs} run(s) in {intervals:.1} interval(s)");
    assert!(
        runs >= 1 && (runs as f64) <= intervals / 0.9 + 1.0,
        "{runs} sync runs in {intervals:.1} intervals"
    );
}

/// Posts a signed push delivery to a replica.
async fn deliver(
    addr: std::net::SocketAddr,
    delivery: &str,
    payload: &serde_json::Value,
) -> (u16, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let sig = sign(WEBHOOK_SECRET, &body);
    http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await
    .unwrap()
}

/// An attempt of a release job stopped while its recipe's check run was in progress (its
/// process died). The job's next attempt fails before it reaches that recipe (the
/// repository can no longer be fetched): it still concludes the check run the dead
/// attempt left open, so GitHub never shows it in progress for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_closes_every_check_run_its_dead_attempt_left_open() {
    use crate::support::story::{APP_ID, INSTALLATION};
    use bakery::github::api::auth::Credentials;
    use bakery::github::{GitHubClient, GitHubReporter, RepoName};

    let story = Story::start().await;
    let pushed = story.push_tag("release-7.0.0", TagKind::Annotated);
    // The dead attempt of job 1 (the store's first job) had started its recipe's check run.
    let key = std::fs::read_to_string(story.app_key_file()).unwrap();
    let client = GitHubClient::new(
        Some(&format!("{}/", story.github.api_url())),
        Credentials::App {
            app_id: APP_ID,
            private_key: bakery::config::Secret::new(key),
        },
    )
    .unwrap();
    let dead = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), Some(INSTALLATION))
        .await
        .unwrap();
    let left_open = dead
        .start_progress("bakery/sandbox-base", &pushed.commit, None, Some("1"))
        .await
        .unwrap();
    dead.update_progress(
        &left_open,
        "Building sandbox-base release-7.0.0",
        "provision",
    )
    .await
    .unwrap();

    story.github.set_git_unreachable(REPO, true);
    let (status, body) = story
        .deliver("push", "retry-closes", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    assert_eq!(job.id, 1);
    assert_eq!(job.state, JobState::Failed);

    let repo = story.github.repo(REPO);
    let run = &repo.check_runs[&left_open.check_run_id.unwrap()];
    assert_eq!(
        run.current["status"], "completed",
        "the dead attempt's check run is concluded: {:#}",
        run.current
    );
    assert_eq!(run.current["conclusion"], "cancelled");
    let title = run.current["output"]["title"].as_str().unwrap_or_default();
    assert!(title.contains("was not finished"), "{title}");
    story.assert_no_github_violations();
}
