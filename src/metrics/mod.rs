//! The process's Prometheus metrics, served at `GET /metrics` (see [`scrape`]).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: typed label
//! sets (a label is a struct field, not a string at a call site), no global macros, and
//! an OpenMetrics text encoder that Prometheus scrapes natively.
//!
//! Counters and histograms live in one process-wide [`Metrics`] ([`metrics()`]) and are
//! moved where things happen: the webhook handler (deliveries), the worker (finished jobs,
//! lease takeovers), the build journal (step durations), the runner (build durations,
//! build takeovers), the retry helpers and the AWS clients' interceptor (calls, retries,
//! throttles), the janitor (leaked resources). Gauges that describe the store (jobs by
//! kind and state, queue depth and age, builds and images by state) are read from the
//! store at scrape time, so every replica reports the same, store-wide values.
//!
//! Label values are always from a closed set (enum names, AWS operation names, GitHub
//! call names without their arguments): nothing a delivery sends becomes a label as is.

pub mod aws;
pub mod scrape;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// A known GitHub event name, or `other`.
    pub event: String,
    /// `accepted`, `ignored`, `duplicate`, `rejected`, `unavailable`.
    pub outcome: String,
    /// Why a delivery was rejected (`signature_mismatch`, `too_large`...); empty otherwise.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindStateLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `aws` or `github`.
    pub system: String,
    /// `RunInstances`, `create check run`...
    pub operation: String,
    /// `ok`, `client_error`, `server_error`, `throttled`, `no_answer`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub system: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TakeoverLabels {
    /// `job` (an expired lease) or `build` (a stale build heartbeat).
    pub what: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The resource kind (`instance`, `image`, `snapshot`...).
    pub kind: String,
}

#[derive(Clone)]
pub struct DurationBuckets(&'static [f64]);

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Step and build durations: seconds to hours.
const DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// Every metric the process exports.
pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub jobs: Family<KindStateLabels, Gauge>,
    pub jobs_finished: Family<KindStateLabels, Counter>,
    pub queue_depth: Gauge,
    pub oldest_queued_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub build_duration: Family<OutcomeLabels, Histogram, DurationBuckets>,
    pub step_duration: Family<StepLabels, Histogram, DurationBuckets>,
    pub calls: Family<CallLabels, Counter>,
    pub retries: Family<OperationLabels, Counter>,
    pub throttles: Family<OperationLabels, Counter>,
    pub lease_takeovers: Family<TakeoverLabels, Counter>,
    pub janitor_runs: Counter,
    pub janitor_leaked: Family<ResourceLabels, Counter>,
    pub builds: Family<StateLabels, Gauge>,
    pub images: Family<StateLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("bakery");
        let m = Metrics {
            registry: Registry::default(),
            deliveries: Family::default(),
            jobs: Family::default(),
            jobs_finished: Family::default(),
            queue_depth: Gauge::default(),
            oldest_queued_age: Gauge::default(),
            build_duration: Family::new_with_constructor(DurationBuckets(DURATION_BUCKETS)),
            step_duration: Family::new_with_constructor(DurationBuckets(DURATION_BUCKETS)),
            calls: Family::default(),
            retries: Family::default(),
            throttles: Family::default(),
            lease_takeovers: Family::default(),
            janitor_runs: Counter::default(),
            janitor_leaked: Family::default(),
            builds: Family::default(),
            images: Family::default(),
        };
        registry.register(
            "deliveries",
            "Webhook deliveries by event and outcome (rejected ones by reason)",
            m.deliveries.clone(),
        );
        registry.register(
            "jobs",
            "Jobs in the store by kind and state",
            m.jobs.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs this process finished, by kind and final state",
            m.jobs_finished.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting in the queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "oldest_queued_job_age_seconds",
            "How long the oldest queued job has waited (0 when none waits)",
            m.oldest_queued_age.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Image builds from start to end, by outcome",
            m.build_duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Build steps from start to finish, by step",
            m.step_duration.clone(),
        );
        registry.register(
            "external_calls",
            "Attempts of AWS and GitHub calls by operation and outcome",
            m.calls.clone(),
        );
        registry.register(
            "external_call_retries",
            "AWS and GitHub attempts that were retries of a failed attempt",
            m.retries.clone(),
        );
        registry.register(
            "external_call_throttles",
            "AWS and GitHub attempts answered with a rate limit",
            m.throttles.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Jobs and builds taken over from a worker or process that stopped",
            m.lease_takeovers.clone(),
        );
        registry.register(
            "janitor_runs",
            "Janitor runs in this process",
            m.janitor_runs.clone(),
        );
        registry.register(
            "janitor_leaked_resources",
            "Leftover cloud resources the janitor found to delete, by kind",
            m.janitor_leaked.clone(),
        );
        registry.register(
            "builds",
            "Image builds in the store by state",
            m.builds.clone(),
        );
        registry.register(
            "images",
            "Images (one per account and region) in the store, by the state of their build",
            m.images.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// One webhook delivery's outcome. `event` is the delivery's header: only known event
    /// names become a label.
    pub fn delivery(&self, event: &str, outcome: &str, reason: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event_label(event).into(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// One attempt of an external call.
    pub fn call(&self, system: &str, operation: &str, outcome: &str, retry: bool) {
        self.calls
            .get_or_create(&CallLabels {
                system: system.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        let op = OperationLabels {
            system: system.into(),
            operation: operation.into(),
        };
        if retry {
            self.retries.get_or_create(&op).inc();
        }
        if outcome == "throttled" {
            self.throttles.get_or_create(&op).inc();
        }
    }

    pub fn takeover(&self, what: &str) {
        self.lease_takeovers
            .get_or_create(&TakeoverLabels { what: what.into() })
            .inc();
    }
}

/// A build ended in `record.state`: its duration from creation (across any takeover).
pub fn build_finished(record: &crate::database::BuildRecord) {
    let secs = (chrono::Utc::now() - record.created_at)
        .num_milliseconds()
        .max(0) as f64
        / 1000.0;
    metrics()
        .build_duration
        .get_or_create(&OutcomeLabels {
            outcome: record.state.as_str().into(),
        })
        .observe(secs);
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// GitHub events bakery knows; anything else is `other`, so that a sender cannot add
/// label values.
fn event_label(event: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ping",
        "push",
        "create",
        "delete",
        "pull_request",
        "issue_comment",
        "installation",
        "installation_repositories",
        "check_run",
        "check_suite",
        "release",
    ];
    KNOWN
        .iter()
        .find(|k| **k == event)
        .copied()
        .unwrap_or("other")
}

/// The operation of a GitHub call named in prose (`create check run bakery/base on
/// acme/images`): its leading words, up to the first argument (a word that is not plain
/// lowercase letters) or preposition, at most four words.
pub fn operation_of(what: &str) -> String {
    let mut words = Vec::new();
    for w in what.split_whitespace() {
        let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if !plain || matches!(w, "on" | "of" | "for" | "in" | "to" | "from") || words.len() == 4 {
            break;
        }
        words.push(w);
    }
    if words.is_empty() {
        "other".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_drop_their_arguments() {
        assert_eq!(
            operation_of("create check run bakery/base on acme/images"),
            "create check run"
        );
        assert_eq!(
            operation_of("get pull request #12 of acme/images"),
            "get pull request"
        );
        assert_eq!(
            operation_of("create an access token for installation 7"),
            "create an access token"
        );
        assert_eq!(operation_of("/app/installations/7"), "other");
    }

    #[test]
    fn unknown_events_are_one_label() {
        assert_eq!(event_label("push"), "push");
        assert_eq!(event_label("x\"}evil"), "other");
    }
}
