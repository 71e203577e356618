//! The worker pool: jobs are leased, run once, and picked up again when a worker dies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bakery::config::WorkerConfig;
use bakery::database::{DynStore, JobKind, JobState, NewJob};
use bakery::worker::{JobContext, JobHandler, WorkerPool};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering;

use crate::support::flaky_store::FlakyStore;
use crate::support::stores::TestStore;

/// Records the jobs it ran; blocks on jobs whose tag says so until cancelled.
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<(i64, i64)>>,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn run(&self, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
        self.ran
            .lock()
            .unwrap()
            .push((ctx.job.id, ctx.job.attempts));
        ctx.log("test", "running").await;
        match ctx.job.git_ref.as_str() {
            "fail" => anyhow::bail!("the build failed at step image"),
            "block" => {
                ctx.cancel.cancelled().await;
                anyhow::bail!("stopped")
            }
            _ => Ok(Some(json!({"built": ctx.job.git_ref}))),
        }
    }
}

fn job(git_ref: &str) -> NewJob {
    NewJob {
        kind: JobKind::Release,
        repo: "acme/images".into(),
        git_ref: git_ref.into(),
        sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
        pr_number: None,
        dedup_key: format!("release:acme/images:{git_ref}"),
        payload: json!({}),
    }
}

fn config(concurrency: usize, lease_secs: u64) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        lease_secs,
        poll_millis: 50,
        ..WorkerConfig::default()
    }
}

async fn wait_for(store: &DynStore, id: i64, state: JobState) {
    for _ in 0..400 {
        if store.get_job(id).await.unwrap().unwrap().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} never reached {state:?}: {:?}",
        store.get_job(id).await.unwrap()
    );
}

#[tokio::test]
async fn jobs_run_once_and_record_their_outcome() {
    let s = TestStore::sqlite().await;
    let ok = s
        .store
        .enqueue_job(&job("release-1"))
        .await
        .unwrap()
        .unwrap();
    let bad = s.store.enqueue_job(&job("fail")).await.unwrap().unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let mut workers = WorkerPool::new(
        s.store.clone(),
        recorder.clone(),
        config(2, 30),
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(shutdown.clone());
    wait_for(&s.store, ok, JobState::Succeeded).await;
    wait_for(&s.store, bad, JobState::Failed).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}

    let ok_job = s.store.get_job(ok).await.unwrap().unwrap();
    assert_eq!(ok_job.result, Some(json!({"built": "release-1"})));
    let bad_job = s.store.get_job(bad).await.unwrap().unwrap();
    assert_eq!(
        bad_job.error.as_deref(),
        Some("the build failed at step image")
    );
    let mut ran = recorder.ran.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, vec![(ok, 1), (bad, 1)]);
    let log = s.store.job_log(bad).await.unwrap();
    let lines: Vec<_> = log.iter().map(|l| l.message.as_str()).collect();
    assert!(lines[0].starts_with("started by"), "{lines:?}");
    assert_eq!(lines[1], "running");
    assert_eq!(lines[2], "failed: the build failed at step image");
}

#[tokio::test]
async fn a_dead_workers_job_is_picked_up_after_its_lease_expires() {
    let s = TestStore::sqlite().await;
    let id = s
        .store
        .enqueue_job(&job("release-2"))
        .await
        .unwrap()
        .unwrap();
    // A worker leases the job and dies: it never renews nor finishes.
    let leased = s
        .store
        .lease_next_job("dead-worker", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, id);

    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let mut workers = WorkerPool::new(
        s.store.clone(),
        recorder.clone(),
        config(1, 30),
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Succeeded).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    assert_eq!(
        recorder.ran.lock().unwrap().clone(),
        vec![(id, 2)],
        "second attempt, by the live worker"
    );
}

#[tokio::test]
async fn cancel_request_stops_a_running_job() {
    let s = TestStore::sqlite().await;
    let id = s.store.enqueue_job(&job("block")).await.unwrap().unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    // Lease of 6 s: the heartbeat looks every 2 s.
    let mut workers = WorkerPool::new(
        s.store.clone(),
        recorder.clone(),
        config(1, 6),
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Running).await;
    s.store.request_cancel(id).await.unwrap();
    wait_for(&s.store, id, JobState::Cancelled).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
}

#[tokio::test]
async fn shutdown_hands_running_jobs_back_to_the_queue() {
    let s = TestStore::sqlite().await;
    let id = s.store.enqueue_job(&job("block")).await.unwrap().unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let mut workers = WorkerPool::new(
        s.store.clone(),
        recorder.clone(),
        config(1, 30),
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Running).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let j = s.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued, "{j:?}");
    assert!(j.lease_owner.is_none());
}

/// Runs jobs; a job whose tag is `panic` panics, and one whose tag is `block` waits until
/// it is stopped. Records when each job started and when it stopped.
#[derive(Default)]
struct Timeline {
    started: Mutex<Vec<(i64, std::time::Instant)>>,
    stopped: Mutex<Vec<(i64, std::time::Instant)>>,
    block: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl JobHandler for Timeline {
    async fn run(&self, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
        self.started
            .lock()
            .unwrap()
            .push((ctx.job.id, std::time::Instant::now()));
        let blocks =
            ctx.job.git_ref == "block" || self.block.load(std::sync::atomic::Ordering::SeqCst);
        if ctx.job.git_ref == "panic" {
            panic!("index out of bounds: the len is 0 but the index is 0");
        }
        if blocks {
            ctx.cancel.cancelled().await;
            self.stopped
                .lock()
                .unwrap()
                .push((ctx.job.id, std::time::Instant::now()));
            anyhow::bail!("stopped");
        }
        Ok(Some(json!({"built": ctx.job.git_ref})))
    }
}

fn pool(store: DynStore, handler: Arc<dyn JobHandler>, config: WorkerConfig) -> WorkerPool {
    WorkerPool::new(store, handler, config, Arc::new(tokio::sync::Notify::new()))
}

/// A handler panics half-way through a job. The job ends failed (its lease is no longer
/// renewed), and the worker slot takes the next job.
#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_frees_its_slot() {
    let s = TestStore::sqlite().await;
    let panics = s.store.enqueue_job(&job("panic")).await.unwrap().unwrap();
    let next = s
        .store
        .enqueue_job(&job("release-after-panic"))
        .await
        .unwrap()
        .unwrap();
    let shutdown = CancellationToken::new();
    // One worker, a lease of 3 s renewed every second.
    let mut workers =
        pool(s.store.clone(), Arc::new(Timeline::default()), config(1, 3)).spawn(shutdown.clone());
    wait_for(&s.store, panics, JobState::Failed).await;
    wait_for(&s.store, next, JobState::Succeeded).await;
    let failed = s.store.get_job(panics).await.unwrap().unwrap();
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("panicked") && e.contains("index out of bounds")),
        "{failed:?}"
    );
    assert_eq!(failed.lease_owner, None, "nobody holds the lease any more");
    // Nothing renews the finished job's lease any more.
    let before = s.store.get_job(panics).await.unwrap().unwrap().updated_at;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = s.store.get_job(panics).await.unwrap().unwrap().updated_at;
    assert_eq!(before, after, "the panicked job's lease is still renewed");
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
}

/// The store stops answering the renewals of a running job. The worker stops the job
/// on its own, before its lease could expire and another replica could take the job.
#[tokio::test]
async fn a_worker_that_cannot_renew_stops_before_another_takes_over() {
    let s = TestStore::sqlite().await;
    let id = s.store.enqueue_job(&job("block")).await.unwrap().unwrap();
    let flaky = FlakyStore::new(s.store.clone());
    let first = Arc::new(Timeline::default());
    let shutdown = CancellationToken::new();
    let mut replica_a = pool(flaky.clone(), first.clone(), config(1, 3)).spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Running).await;
    flaky.renewals_fail.store(true, Ordering::SeqCst);

    // Another replica, whose store is fine, polls for jobs meanwhile.
    let second = Arc::new(Timeline::default());
    let mut replica_b = pool(s.store.clone(), second.clone(), config(1, 3)).spawn(shutdown.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while second.started.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica never took the job over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken_over = second.started.lock().unwrap()[0].1;
    let stopped = first.stopped.lock().unwrap().first().map(|(_, at)| *at);
    assert!(
        stopped.is_some_and(|at| at < taken_over),
        "the first worker was still working when the other replica took its job over \
         (stopped: {stopped:?})"
    );
    shutdown.cancel();
    while replica_a.join_next().await.is_some() {}
    while replica_b.join_next().await.is_some() {}
}

/// Recording a finished job fails twice (the store is briefly unreachable). The job is
/// recorded once the store answers again, and it never runs a second time.
#[tokio::test]
async fn a_failed_finish_is_retried_and_never_reruns_the_job() {
    let s = TestStore::sqlite().await;
    let id = s
        .store
        .enqueue_job(&job("release-4"))
        .await
        .unwrap()
        .unwrap();
    let flaky = FlakyStore::new(s.store.clone());
    flaky.finish_failures.store(2, Ordering::SeqCst);
    let timeline = Arc::new(Timeline::default());
    let shutdown = CancellationToken::new();
    let mut workers = pool(flaky.clone(), timeline.clone(), config(2, 2)).spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Succeeded).await;
    // Longer than the lease: an unrecorded job would have been leased again by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let runs = timeline.started.lock().unwrap().len();
    assert_eq!(runs, 1, "the finished job ran {runs} times");
    let j = s.store.get_job(id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Succeeded, 1), "{j:?}");
}

/// Six deploys in a row restart the server while a job runs. Each hands the job back;
/// none of them counts as a failed attempt, and the job runs to the end after the last.
#[tokio::test]
async fn shutdown_hand_backs_do_not_count_as_attempts() {
    let s = TestStore::sqlite().await;
    let id = s
        .store
        .enqueue_job(&job("release-5"))
        .await
        .unwrap()
        .unwrap();
    let timeline = Arc::new(Timeline::default());
    timeline.block.store(true, Ordering::SeqCst);
    for deploy in 1..=6 {
        let shutdown = CancellationToken::new();
        let mut workers =
            pool(s.store.clone(), timeline.clone(), config(1, 30)).spawn(shutdown.clone());
        wait_for(&s.store, id, JobState::Running).await;
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        let j = s.store.get_job(id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Queued, "deploy {deploy}: {j:?}");
        assert_eq!(
            j.attempts, 0,
            "deploy {deploy}: a hand-back counted as an attempt"
        );
    }
    timeline.block.store(false, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let mut workers =
        pool(s.store.clone(), timeline.clone(), config(1, 30)).spawn(shutdown.clone());
    wait_for(&s.store, id, JobState::Succeeded).await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
}

/// A replica whose clock runs ten minutes ahead polls while another replica holds a
/// job's lease. Leases are decided by the database's clock, so it does not take the job.
#[tokio::test]
async fn a_replica_with_a_fast_clock_does_not_steal_a_live_lease() {
    for s in [TestStore::sqlite().await, TestStore::postgres().await] {
        let id = s
            .store
            .enqueue_job(&job("release-6"))
            .await
            .unwrap()
            .unwrap();
        let leased = s
            .store
            .lease_next_job("replica-a-w0", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(leased.id, id);
        let fast = bakery::database::SqlStore::connect(&s.url)
            .await
            .unwrap()
            .with_clock_skew(chrono::Duration::minutes(10));
        use bakery::database::Store;
        let stolen = fast
            .lease_next_job("replica-b-w0", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            stolen.is_none(),
            "{}: the fast replica took a job whose lease runs for another minute: {stolen:?}",
            s.url
        );
        // Its renewals and the slow replica's keep the lease where the database says.
        assert!(s
            .store
            .renew_lease(id, "replica-a-w0", Duration::from_secs(60))
            .await
            .unwrap());
        let j = s.store.get_job(id).await.unwrap().unwrap();
        let left = j.lease_expires_at.unwrap() - chrono::Utc::now();
        assert!(
            left > chrono::Duration::seconds(50) && left <= chrono::Duration::seconds(61),
            "{left:?}"
        );
    }
}
