//! `GET /metrics` after a release story and a rejected delivery: every counter and
//! histogram moved by exactly what happened, read with a Prometheus text-format parser.

use std::collections::BTreeMap;

use bakery::database::{BuildFilter, BuildState};
use prometheus_parse::{Scrape, Value};

use crate::support::bakery_process::http;
use crate::support::story::*;

/// One scrape: (metric name, labels) → value; histograms by their `_count`.
struct Metrics(Scrape);

impl Metrics {
    async fn scrape(story: &Story) -> Metrics {
        let (status, body) = http(story.bakery.addr, "GET", "/metrics", &[], b"")
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert!(!scrape.samples.is_empty(), "{body}");
        Metrics(scrape)
    }

    /// The sum of `name`'s samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a single value: {other:?}"),
            })
            .sum()
    }

    /// Every value of `label` among `name`'s samples that include `labels`.
    fn values_of(&self, name: &str, label: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let mut out: Vec<String> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A histogram's `+Inf` bucket: every observation.
    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count)
                    .expect("a +Inf bucket"),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_a_release_and_a_rejected_delivery() {
    let story = Story::start().await;
    let before = Metrics::scrape(&story).await;
    assert_eq!(before.sum("bakery_deliveries_total", &[]), 0.0);
    assert_eq!(before.sum("bakery_queue_depth", &[]), 0.0);

    // A delivery signed with the wrong secret.
    let pushed = story.push_tag("release-0.1.0", TagKind::Annotated);
    let payload = story.push_payload(&pushed);
    let body = serde_json::to_vec(&payload).unwrap();
    let forged = crate::support::examples::sign("not-the-secret", &body);
    let (status, _) = http(
        story.bakery.addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "forged-1"),
            ("X-Hub-Signature-256", &forged),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 401);

    // The release.
    let aws_before = story.proxy.requests().len();
    let github_before = story.github.calls().len();
    let (status, body) = story.deliver("push", "release-delivery-1", &payload).await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    let aws_calls: Vec<_> = story.proxy.requests()[aws_before..].to_vec();
    let github_calls: Vec<_> = story.github.calls()[github_before..].to_vec();

    let m = Metrics::scrape(&story).await;
    // Deliveries: one rejected for its signature, one accepted, nothing else.
    assert_eq!(
        m.sum(
            "bakery_deliveries_total",
            &[
                ("event", "push"),
                ("outcome", "rejected"),
                ("reason", "signature_mismatch")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "bakery_deliveries_total",
            &[("event", "push"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(m.sum("bakery_deliveries_total", &[]), 2.0);

    // Jobs: one release finished and succeeded; nothing queued.
    assert_eq!(
        m.sum(
            "bakery_jobs_finished_total",
            &[("kind", "release"), ("state", "succeeded")]
        ),
        1.0
    );
    assert_eq!(m.sum("bakery_jobs_finished_total", &[]), 1.0);
    assert_eq!(
        m.sum(
            "bakery_jobs",
            &[("kind", "release"), ("state", "succeeded")]
        ),
        1.0
    );
    assert_eq!(m.sum("bakery_jobs", &[]), 1.0);
    assert_eq!(m.sum("bakery_queue_depth", &[]), 0.0);
    assert_eq!(m.sum("bakery_oldest_queued_job_age_seconds", &[]), 0.0);
    assert_eq!(m.sum("bakery_lease_takeovers_total", &[]), 0.0);

    // Builds and images: as many as the store holds.
    let builds = story
        .store
        .list_builds(&BuildFilter::default())
        .await
        .unwrap();
    let succeeded = builds
        .iter()
        .filter(|b| b.state == BuildState::Succeeded)
        .count();
    assert!(succeeded >= 1, "{builds:?}");
    assert_eq!(
        m.observations("bakery_build_duration_seconds", &[("outcome", "succeeded")]),
        succeeded as f64
    );
    assert_eq!(
        m.observations("bakery_build_duration_seconds", &[]),
        builds.len() as f64
    );
    assert_eq!(
        m.sum("bakery_builds", &[("state", "succeeded")]),
        succeeded as f64
    );
    assert_eq!(
        m.sum("bakery_images", &[("state", "succeeded")]),
        (succeeded * story_targets().len()) as f64
    );
    // Every step of every build once, provisioning included.
    assert_eq!(
        m.observations("bakery_step_duration_seconds", &[("step", "provision")]),
        succeeded as f64
    );
    for step in m.values_of("bakery_step_duration_seconds_count", "step", &[]) {
        assert_eq!(
            m.observations("bakery_step_duration_seconds", &[("step", &step)]),
            succeeded as f64,
            "step {step}"
        );
    }

    // AWS: every request the proxy saw, by operation. Credentials for other accounts come
    // from the SDK's AssumeRole provider, whose own client the metrics do not see.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in aws_calls.iter().filter(|c| c.action != "AssumeRole") {
        *seen.entry(c.action.clone()).or_default() += 1;
    }
    assert!(seen.contains_key("RunInstances") && seen.contains_key("CopyImage"));
    let counted: BTreeMap<String, usize> = m
        .values_of(
            "bakery_external_calls_total",
            "operation",
            &[("system", "aws")],
        )
        .into_iter()
        .map(|op| {
            let n = m.sum(
                "bakery_external_calls_total",
                &[("system", "aws"), ("operation", &op)],
            );
            (op, n as usize)
        })
        .collect();
    assert_eq!(counted, seen, "AWS calls by operation");
    assert_eq!(
        m.sum(
            "bakery_external_calls_total",
            &[("system", "aws"), ("outcome", "throttled")]
        ),
        0.0
    );

    // GitHub: the check runs created and completed, as the fake GitHub saw them.
    let of = |op: &str| github_calls.iter().filter(|c| c.operation_id == op).count() as f64;
    assert!(of("checks/create") >= 1.0);
    assert_eq!(
        m.sum(
            "bakery_external_calls_total",
            &[
                ("system", "github"),
                ("operation", "create check run"),
                ("outcome", "ok")
            ]
        ),
        of("checks/create")
    );
    let github_total = m.sum("bakery_external_calls_total", &[("system", "github")]);
    let api_calls = github_calls
        .iter()
        // Clones and fetches are git's protocol, not API calls.
        .filter(|c| !c.operation_id.is_empty() && c.operation_id != "git")
        .count() as f64;
    let ops: Vec<_> = github_calls
        .iter()
        .map(|c| c.operation_id.as_str())
        .collect();
    let counted = m.values_of(
        "bakery_external_calls_total",
        "operation",
        &[("system", "github")],
    );
    assert_eq!(
        github_total, api_calls,
        "every GitHub API call, once: {ops:?} {counted:?}"
    );
    assert_eq!(m.sum("bakery_external_call_retries_total", &[]), 0.0);
}
