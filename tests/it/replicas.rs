//! The real `bakery serve` stopping and starting mid-build: a deploy's SIGTERM hands a
//! nearly finished release over to the next process instead of throwing it away.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bakery::database::{BuildFilter, BuildState, JobState};

use crate::support::story::{story_targets, Story, REPO};

/// A deploy stops `bakery serve` with SIGTERM while a release is distributing its copies.
/// The build is handed over as it is: nothing it made is deleted, and the hand-back does
/// not count as one of the job's attempts. The new process resumes the build, adopts what
/// was made, takes over the check run, and the release ends with one image per target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_distribution_hands_the_release_over() {
    let mut story = Story::start().await;
    let sha = story.tag_and_push("release-0.2.0");
    let (status, body) = story
        .deliver(
            "push",
            "handover-delivery-1",
            &story.tag_push_payload("release-0.2.0", &sha),
        )
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
    assert!(
        !journal.iter().any(|e| e.kind == "deleted"),
        "nothing the build made was deleted: {journal:#?}"
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
