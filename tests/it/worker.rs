//! The worker pool: jobs are leased, run once, and picked up again when a worker dies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bakery::config::WorkerConfig;
use bakery::database::{DynStore, JobKind, JobState, NewJob};
use bakery::worker::{JobContext, JobHandler, WorkerPool};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
