//! The store's contract, run against SQLite and PostgreSQL alike.

use std::time::Duration;

use bakery::database::*;
use serde_json::json;

use crate::support::stores::TestStore;

fn release_job(tag: &str, sha: &str) -> NewJob {
    NewJob {
        kind: JobKind::Release,
        repo: "acme/images".into(),
        git_ref: tag.into(),
        sha: sha.into(),
        pr_number: None,
        dedup_key: format!("release:acme/images:{tag}:{sha}"),
        payload: json!({"tag": tag}),
    }
}

fn delivery(id: &str, event: &str) -> NewDelivery {
    NewDelivery {
        delivery_id: id.into(),
        event: event.into(),
        summary: "test".into(),
    }
}

const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const SHA_B: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";

async fn redelivery_never_creates_a_second_job(s: &TestStore) {
    let store = &s.store;
    let job = release_job("release-0.1.0", SHA_A);
    let first = store
        .record_delivery(&delivery("d-1", "push"), Some(&job))
        .await
        .unwrap();
    assert!(matches!(first, DeliveryOutcome::Created(_)));
    for _ in 0..10 {
        let again = store
            .record_delivery(&delivery("d-1", "push"), Some(&job))
            .await
            .unwrap();
        assert_eq!(again, DeliveryOutcome::Duplicate);
    }
    // Another delivery for the same (repo, tag, SHA) joins the same job.
    let other = store
        .record_delivery(&delivery("d-2", "push"), Some(&job))
        .await
        .unwrap();
    let DeliveryOutcome::Created(id) = first else {
        unreachable!()
    };
    assert_eq!(other, DeliveryOutcome::Merged(id));
    let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].delivery_ids, vec!["d-1", "d-2"]);
    assert_eq!(jobs[0].state, JobState::Queued);
}

async fn create_then_push_is_one_job(s: &TestStore) {
    let store = &s.store;
    let mut create = release_job("release-0.2.0", "");
    create.dedup_key = "release:acme/images:release-0.2.0:unresolved:c-1".into();
    let a = store
        .record_delivery(&delivery("c-1", "create"), Some(&create))
        .await
        .unwrap();
    let b = store
        .record_delivery(
            &delivery("p-1", "push"),
            Some(&release_job("release-0.2.0", SHA_A)),
        )
        .await
        .unwrap();
    let DeliveryOutcome::Created(id) = a else {
        panic!("{a:?}")
    };
    assert_eq!(b, DeliveryOutcome::Merged(id));
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.sha, SHA_A, "the push fills in the SHA");
    assert_eq!(
        job.dedup_key,
        format!("release:acme/images:release-0.2.0:{SHA_A}")
    );

    // And the other order: push, then create.
    let p = store
        .record_delivery(
            &delivery("p-2", "push"),
            Some(&release_job("release-0.3.0", SHA_B)),
        )
        .await
        .unwrap();
    let mut create = release_job("release-0.3.0", "");
    create.dedup_key = "release:acme/images:release-0.3.0:unresolved:c-2".into();
    let c = store
        .record_delivery(&delivery("c-2", "create"), Some(&create))
        .await
        .unwrap();
    let DeliveryOutcome::Created(id2) = p else {
        panic!("{p:?}")
    };
    assert_eq!(c, DeliveryOutcome::Merged(id2));
    assert_eq!(
        store.list_jobs(&JobFilter::default()).await.unwrap().len(),
        2
    );
}

/// The `create` and `push` deliveries GitHub sends for one new annotated tag, built from
/// a real repository and decided as intake decides them. Returns (create's job, push's
/// job, the tagged commit).
fn tag_deliveries(tag: &str) -> (NewJob, NewJob, String) {
    use crate::support::{git, push_event};
    let (work, bare, _) = git::bare_with(&[("bakery.toml", "[defaults]\n")]);
    let pushed = push_event::tag_and_push(
        work.path(),
        bare.path(),
        tag,
        push_event::TagKind::Annotated,
        false,
    );
    let patterns = bakery::server::intake::TagPatterns::new(&["release-*".into()]).unwrap();
    let decide = |event: &str, payload: &serde_json::Value, delivery: &str| {
        let parsed =
            bakery::github::webhook::parse_event(event, payload.to_string().as_bytes()).unwrap();
        match bakery::server::intake::decide(&parsed, &patterns, delivery) {
            bakery::server::intake::IntakeDecision::Enqueue(job) => job,
            other => panic!("{event} asks for no job: {other:?}"),
        }
    };
    let create = decide("create", &push_event::create_payload("main", tag), "c-4");
    let push = decide(
        "push",
        &push_event::push_payload(bare.path(), "https://github.com/acme/images", &pushed),
        "p-4",
    );
    (create, push, pushed.commit)
}

/// A tag's `create` is leased by a worker before its `push` arrives. The push joins the
/// running job (its delivery is recorded on it); the worker then records the commit it
/// peeled under the same key, so the tag has one job record, and a sync of the same tag
/// afterwards enqueues nothing.
async fn a_create_running_when_its_push_arrives_builds_once(s: &TestStore) {
    let store = &s.store;
    let (create, push, commit) = tag_deliveries("release-0.4.0");
    assert!(create.sha.is_empty(), "a create carries no commit");
    let DeliveryOutcome::Created(create_id) = store
        .record_delivery(&delivery("c-4", "create"), Some(&create))
        .await
        .unwrap()
    else {
        panic!("a job")
    };
    let leased = store
        .lease_next_job("w-1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, create_id);
    // A sync lists the tag first: it finds the create's job, not a gap.
    assert_eq!(
        store.enqueue_job(&push).await.unwrap(),
        None,
        "sync adds no job"
    );
    assert_eq!(
        store.list_jobs(&JobFilter::default()).await.unwrap().len(),
        1
    );
    let pushed = store
        .record_delivery(&delivery("p-4", "push"), Some(&push))
        .await
        .unwrap();
    assert_eq!(
        pushed,
        DeliveryOutcome::Merged(create_id),
        "the push joins the running create's job"
    );
    // The worker, done peeling, records the commit under the push's key.
    let key = format!("release:{}:release-0.4.0:{commit}", push.repo);
    assert_eq!(push.dedup_key, key);
    let resolved = store
        .resolve_job_commit(create_id, &commit, &key, &json!({"tag": "release-0.4.0"}))
        .await
        .unwrap();
    assert_eq!(resolved, ResolvedCommit::Recorded);
    let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1, "one job record: {jobs:#?}");
    assert_eq!(jobs[0].id, create_id);
    assert_eq!(
        (jobs[0].sha.as_str(), jobs[0].dedup_key.as_str()),
        (commit.as_str(), key.as_str())
    );
    assert_eq!(jobs[0].delivery_ids, vec!["c-4", "p-4"]);
    assert_eq!(jobs[0].state, JobState::Running, "still the worker's");
    assert_eq!(
        store.enqueue_job(&push).await.unwrap(),
        None,
        "sync adds nothing"
    );

    // Without a push, the create's job takes the commit and the key a later push or
    // sync dedups against.
    let mut lone = release_job("release-0.5.0", "");
    lone.dedup_key = "release:acme/images:release-0.5.0:unresolved:c-5".into();
    let DeliveryOutcome::Created(lone_id) = store
        .record_delivery(&delivery("c-5", "create"), Some(&lone))
        .await
        .unwrap()
    else {
        panic!("a job")
    };
    let key = format!("release:acme/images:release-0.5.0:{SHA_B}");
    assert_eq!(
        store
            .resolve_job_commit(lone_id, SHA_B, &key, &json!({"tag": "release-0.5.0"}))
            .await
            .unwrap(),
        ResolvedCommit::Recorded
    );
    let job = store.get_job(lone_id).await.unwrap().unwrap();
    assert_eq!(
        (job.sha.as_str(), job.dedup_key.as_str()),
        (SHA_B, key.as_str())
    );
    assert_eq!(
        store
            .enqueue_job(&release_job("release-0.5.0", SHA_B))
            .await
            .unwrap(),
        None
    );
}

async fn moved_tag_is_a_new_job(s: &TestStore) {
    let store = &s.store;
    store
        .record_delivery(
            &delivery("m-1", "push"),
            Some(&release_job("release-1.0.0", SHA_A)),
        )
        .await
        .unwrap();
    let moved = store
        .record_delivery(
            &delivery("m-2", "push"),
            Some(&release_job("release-1.0.0", SHA_B)),
        )
        .await
        .unwrap();
    assert!(matches!(moved, DeliveryOutcome::Created(_)), "{moved:?}");
}

async fn leases_expire_and_are_taken_over(s: &TestStore) {
    let store = &s.store;
    store
        .record_delivery(
            &delivery("l-1", "push"),
            Some(&release_job("release-2.0.0", SHA_A)),
        )
        .await
        .unwrap();
    let job = store
        .lease_next_job("worker-a", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.lease_owner.as_deref(), Some("worker-a"));
    assert!(
        store
            .lease_next_job("worker-b", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "leased jobs are not handed out twice"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = store
        .lease_next_job("worker-b", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, job.id);
    assert_eq!(again.attempts, 2);
    // worker-a lost it: it can neither renew nor finish.
    assert!(!store
        .renew_lease(job.id, "worker-a", Duration::from_secs(30))
        .await
        .unwrap());
    let done = JobOutcome {
        state: JobState::Succeeded,
        result: Some(json!({"ok": true})),
        error: None,
    };
    assert!(store.finish_job(job.id, "worker-a", &done).await.is_err());
    assert!(store
        .renew_lease(job.id, "worker-b", Duration::from_secs(30))
        .await
        .unwrap());
    store.finish_job(job.id, "worker-b", &done).await.unwrap();
    let job = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(json!({"ok": true})));
    assert!(job.lease_owner.is_none());
}

async fn concurrent_leases_hand_out_each_job_once(s: &TestStore) {
    let store = &s.store;
    for i in 0..12 {
        store
            .record_delivery(
                &delivery(&format!("c-{i}"), "push"),
                Some(&release_job(&format!("release-3.{i}"), SHA_A)),
            )
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut got = vec![];
            while let Some(j) = store
                .lease_next_job(&format!("w{w}"), Duration::from_secs(60))
                .await
                .unwrap()
            {
                got.push(j.id);
            }
            got
        });
    }
    let mut all = vec![];
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 12, "every job leased");
    assert_eq!(all.len(), 12, "no job leased twice");
}

async fn cancel_queued_and_running(s: &TestStore) {
    let store = &s.store;
    let a = store
        .enqueue_job(&release_job("release-4.0.0", SHA_A))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .enqueue_job(&release_job("release-4.0.0", SHA_A))
            .await
            .unwrap(),
        None,
        "same dedup key"
    );
    store.request_cancel(a).await.unwrap();
    assert_eq!(
        store.get_job(a).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    let b = store
        .enqueue_job(&release_job("release-4.1.0", SHA_A))
        .await
        .unwrap()
        .unwrap();
    let leased = store
        .lease_next_job("w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, b);
    store.request_cancel(b).await.unwrap();
    let j = store.get_job(b).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Running);
    assert!(j.cancel_requested);
}

async fn logs_builds_and_journal(s: &TestStore) {
    let store = &s.store;
    let id = store
        .enqueue_job(&release_job("release-5.0.0", SHA_A))
        .await
        .unwrap()
        .unwrap();
    store
        .append_job_log(id, "checkout", "cloned")
        .await
        .unwrap();
    store
        .append_job_log(id, "build", "launched i-123")
        .await
        .unwrap();
    let log = store.job_log(id).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|l| (l.seq, l.step.as_str(), l.message.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "checkout", "cloned"), (2, "build", "launched i-123")]
    );

    let now = chrono::Utc::now();
    let mut build = BuildRecord {
        build_id: "b-1".into(),
        job_id: Some(id),
        recipe: "base-ubuntu".into(),
        version: "release-5.0.0".into(),
        git_sha: SHA_A.into(),
        state: BuildState::Running,
        plan: json!({"recipe": "base-ubuntu"}),
        manifest: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    store.upsert_build(&build).await.unwrap();
    build.state = BuildState::Succeeded;
    build.manifest = Some(json!({"builds": []}));
    store.upsert_build(&build).await.unwrap();
    let got = store.get_build("b-1").await.unwrap().unwrap();
    assert_eq!(got.state, BuildState::Succeeded);
    assert_eq!(got.manifest, Some(json!({"builds": []})));
    let by_recipe = store
        .list_builds(&BuildFilter {
            recipe: Some("base-ubuntu".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_recipe.len(), 1);
    assert!(store
        .list_builds(&BuildFilter {
            state: Some(BuildState::Failed),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());

    let e1 = store
        .append_journal(
            "b-1",
            &JournalEntry {
                kind: "creating".into(),
                data: json!({"type": "instance"}),
            },
        )
        .await
        .unwrap();
    let e2 = store
        .append_journal(
            "b-1",
            &JournalEntry {
                kind: "created".into(),
                data: json!({"type": "instance", "id": "i-1"}),
            },
        )
        .await
        .unwrap();
    assert_eq!((e1, e2), (1, 2));
    let j = store.journal("b-1").await.unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j[1].data["id"], "i-1");
    assert!(store.journal("b-2").await.unwrap().is_empty());
}

async fn concurrent_deliveries_are_recorded_exactly_once(s: &TestStore) {
    let store = &s.store;
    let mut calls = vec![];
    for tag in 0..20 {
        for d in 0..2 {
            let id = format!("t{tag}-d{d}");
            let job = release_job(&format!("release-7.{tag}"), SHA_A);
            // Each delivery arrives twice at once (a redelivery racing the first).
            calls.push((id.clone(), Some(job.clone())));
            calls.push((id, Some(job)));
        }
    }
    for p in 0..10 {
        calls.push((format!("ping-{p}"), None));
    }
    let results = futures::future::join_all(calls.iter().map(|(id, job)| {
        let store = store.clone();
        let (id, job) = (id.clone(), job.clone());
        async move {
            let outcome = store
                .record_delivery(&delivery(&id, "push"), job.as_ref())
                .await
                .unwrap();
            (id, job.map(|j| j.git_ref), outcome)
        }
    }))
    .await;
    let mut by_delivery: std::collections::BTreeMap<String, Vec<DeliveryOutcome>> =
        Default::default();
    let mut created_per_tag: std::collections::BTreeMap<String, usize> = Default::default();
    for (id, tag, outcome) in &results {
        by_delivery
            .entry(id.clone())
            .or_default()
            .push(outcome.clone());
        if let (Some(tag), DeliveryOutcome::Created(_)) = (tag, outcome) {
            *created_per_tag.entry(tag.clone()).or_default() += 1;
        }
    }
    for (id, outcomes) in &by_delivery {
        let recorded = outcomes
            .iter()
            .filter(|o| **o != DeliveryOutcome::Duplicate)
            .count();
        assert_eq!(recorded, 1, "{id}: {outcomes:?}");
    }
    assert_eq!(created_per_tag.len(), 20, "{created_per_tag:?}");
    assert!(
        created_per_tag.values().all(|n| *n == 1),
        "{created_per_tag:?}"
    );
    let pings = results
        .iter()
        .filter(|(_, _, o)| *o == DeliveryOutcome::Recorded)
        .count();
    assert_eq!(pings, 10);
    let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 20);
    for j in &jobs {
        assert_eq!(j.delivery_ids.len(), 2, "{j:?}");
        for d in &j.delivery_ids {
            let tag = j.git_ref.strip_prefix("release-7.").unwrap();
            assert!(
                d.starts_with(&format!("t{tag}-")),
                "{d} attached to {}",
                j.git_ref
            );
        }
    }
}

/// Job logs are written in batches, read in pages, and deleted once their job finished
/// longer ago than the retention; running and recent jobs keep theirs.
async fn job_logs_are_batched_paged_and_expire(s: &TestStore) {
    let store = &s.store;
    let old = store
        .enqueue_job(&release_job("release-1", SHA_A))
        .await
        .unwrap()
        .unwrap();
    let running = store
        .enqueue_job(&release_job("release-2", SHA_B))
        .await
        .unwrap()
        .unwrap();
    let batch: Vec<(String, String)> = (0..1200)
        .map(|i| ("provision".to_string(), format!("line {i}")))
        .collect();
    store.append_job_log_batch(old, &batch).await.unwrap();
    store
        .append_job_log(old, "job", "after the batch")
        .await
        .unwrap();
    store
        .append_job_log_batch(running, &batch[..3])
        .await
        .unwrap();

    let first = store.job_log_page(old, 0, 500).await.unwrap();
    assert_eq!(first.len(), 500);
    assert_eq!(first[0].message, "line 0");
    let last = store.job_log_page(old, 1000, 500).await.unwrap();
    assert_eq!(last.len(), 201);
    assert_eq!(last[0].message, "line 1000");
    assert_eq!(last[200].message, "after the batch");
    assert_eq!(last[200].seq, 1201);

    // `old` finishes; `running` is still running.
    let leased = store
        .lease_next_job("worker-a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, old);
    store
        .finish_job(
            old,
            "worker-a",
            &JobOutcome {
                state: JobState::Succeeded,
                result: None,
                error: None,
            },
        )
        .await
        .unwrap();
    store
        .lease_next_job("worker-b", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now();
    assert_eq!(
        store
            .delete_finished_job_logs(now - chrono::Duration::days(1))
            .await
            .unwrap(),
        0,
        "finished just now: kept"
    );
    assert_eq!(
        store
            .delete_finished_job_logs(now + chrono::Duration::seconds(5))
            .await
            .unwrap(),
        1201
    );
    assert!(store.job_log(old).await.unwrap().is_empty());
    assert_eq!(
        store.job_log(running).await.unwrap().len(),
        3,
        "running: kept"
    );
}

/// A build distributes to many targets at once: its copies journal in parallel. Every
/// entry is kept, each with a sequence number of its own.
async fn parallel_journal_entries_all_land(s: &TestStore) {
    let store = &s.store;
    let writes = (0..24).map(|i| {
        let store = store.clone();
        async move {
            store
                .append_journal(
                    "b-parallel",
                    &JournalEntry {
                        kind: "copied".into(),
                        data: json!({ "copy": i }),
                    },
                )
                .await
        }
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    let journal = store.journal("b-parallel").await.unwrap();
    let seqs: Vec<i64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
    let logs = (0..24).map(|i| {
        let store = store.clone();
        async move {
            store
                .append_job_log(1, "distribute", &format!("copy {i} available"))
                .await
        }
    });
    let id = store
        .enqueue_job(&release_job("release-7.7.7", SHA_A))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 1);
    for r in futures::future::join_all(logs).await {
        r.unwrap();
    }
    assert_eq!(store.job_log(1).await.unwrap().len(), 24);
}

/// A repository's first sight is recorded once, with the tags it held then; a second
/// record (another replica's sync) changes nothing.
async fn a_repository_is_first_seen_once(s: &TestStore) {
    let store = &s.store;
    assert_eq!(store.repo_history("acme/images").await.unwrap(), None);
    let old = vec![
        ("release-0.1.0".to_string(), SHA_A.to_string()),
        ("release-0.2.0".to_string(), SHA_B.to_string()),
    ];
    assert!(store
        .record_repo_history("acme/images", &old)
        .await
        .unwrap());
    let again = [("release-0.3.0".to_string(), SHA_A.to_string())];
    assert!(!store
        .record_repo_history("acme/images", &again)
        .await
        .unwrap());
    let history = store.repo_history("acme/images").await.unwrap().unwrap();
    assert_eq!(history.tags, old.into_iter().collect());
    let age = chrono::Utc::now() - history.first_seen_at;
    assert!(age.num_seconds().abs() < 60, "{:?}", history.first_seen_at);
    assert_eq!(store.repo_history("acme/other").await.unwrap(), None);
}

macro_rules! store_contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(&crate::support::stores::TestStore::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(&crate::support::stores::TestStore::postgres().await).await })*
        }
    };
}

store_contract!(
    redelivery_never_creates_a_second_job,
    create_then_push_is_one_job,
    a_create_running_when_its_push_arrives_builds_once,
    moved_tag_is_a_new_job,
    leases_expire_and_are_taken_over,
    concurrent_leases_hand_out_each_job_once,
    cancel_queued_and_running,
    logs_builds_and_journal,
    concurrent_deliveries_are_recorded_exactly_once,
    job_logs_are_batched_paged_and_expire,
    parallel_journal_entries_all_land,
    a_repository_is_first_seen_once,
);

#[tokio::test]
async fn sqlite_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/bakery.db", dir.path().display());
    {
        let s = SqlStore::connect(&url).await.unwrap();
        s.enqueue_job(&release_job("release-9.0.0", SHA_A))
            .await
            .unwrap();
    }
    let s = SqlStore::connect(&url).await.unwrap();
    assert_eq!(s.list_jobs(&JobFilter::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unsupported_url_names_the_fix() {
    let err = SqlStore::connect("mysql://x@localhost/db")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("use sqlite://"), "{err:#}");
}
