//! The concurrent-builds benchmark (`bench/concurrent/run.sh`): one `bakery serve`
//! builds N releases at once, each recipe on a sandboxed builder of its own, against moto
//! behind the recording proxy with a fixed latency on every EC2 call. A lone build of the
//! same kind runs first in the same server, so the figures are side by side in one run:
//! peak RSS of the server, p50/p99/max time to completion (delivery accepted to job
//! finished, as the store records them), the ratio slowest concurrent build / lone
//! build, and the AWS calls per second the server made while the N builds ran.
//!
//! The warm-up build's calls are judged by the IAM oracle; after it the proxy only
//! records, so moto's time is spent on bakery's calls and not on the oracle's lookups.
//!
//! Ignored: run through the script (`-- --ignored`); it prints, it does not time-assert.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bakery::database::{Job, JobState};

use crate::support::iam_oracle::{self, Policies};
use crate::support::sandbox::{Sandbox, SandboxOptions};
use crate::support::story::*;

/// A recipe of the benchmark: the story recipe under another name, on sandbox `port`.
fn bench_recipe(name: &str, port: u16) -> String {
    sandbox_recipe(port, "")
        .replace(
            "name = \"sandbox-base-{{ version }}\"",
            &format!("name = \"{name}-{{{{ version }}}}\""),
        )
        .replace(
            "description = \"A base image built by the end-to-end story\"",
            &format!("description = \"{name}, built by the concurrency benchmark\""),
        )
}

/// Pushes `tag` with git and returns the push event GitHub would deliver for it.
fn push(story: &Story, tag: &str) -> serde_json::Value {
    let pushed = story.tag_and_push(tag);
    story.push_payload(&pushed)
}

/// Delivers the push event of `tag`.
async fn deliver(story: &Story, tag: &str, payload: &serde_json::Value) {
    let (status, body) = story
        .deliver("push", &format!("bench-{tag}"), payload)
        .await;
    assert_eq!(status, 202, "{body}");
}

/// Waits until the jobs of `tags` (a release job's git ref is its tag) exist and have
/// finished.
async fn finished(story: &Story, tags: &[String], timeout: Duration) -> Vec<Job> {
    let refs: BTreeSet<String> = tags.iter().cloned().collect();
    let started = Instant::now();
    loop {
        let jobs: Vec<Job> = story
            .jobs()
            .await
            .into_iter()
            .filter(|j| refs.contains(&j.git_ref))
            .collect();
        if jobs.len() == refs.len() && jobs.iter().all(|j| j.state.is_finished()) {
            return jobs;
        }
        assert!(
            started.elapsed() < timeout,
            "{} of {} jobs finished within {timeout:?}; bakery's log:\n{}",
            jobs.iter().filter(|j| j.state.is_finished()).count(),
            refs.len(),
            story.bakery.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU seconds (user + system) process `pid` has used (`/proc/<pid>/stat`).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields are counted after its closing ')'.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let ticks = fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0);
    ticks / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds the whole machine has spent busy (everything but idle and I/O wait), from
/// `/proc/stat`.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).unwrap_or(&0.0)
        - ticks.get(4).unwrap_or(&0.0);
    busy / clock_ticks()
}

/// Seconds from the delivery (job created) to the job's end (its last update).
fn completion_secs(job: &Job) -> f64 {
    (job.updated_at - job.created_at).num_milliseconds() as f64 / 1000.0
}

async fn check_succeeded(story: &Story, jobs: &[Job]) {
    for j in jobs {
        if j.state != JobState::Succeeded {
            let log = story.job_log(j.id).await;
            story.assert_succeeded(j, &log);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: bench/concurrent/run.sh"]
async fn bench_concurrent_builds() {
    let n: usize = std::env::var("CONCURRENT_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let latency_ms: u64 = std::env::var("CONCURRENT_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // The pool: one sandbox per build (a build seals its builder: it takes one builder
    // once), plus two for the lone builds (a warm-up and the measured one).
    let started = Instant::now();
    let mut pool: Vec<Sandbox> = vec![];
    while pool.len() < n + 2 {
        let batch = (n + 2 - pool.len()).min(8);
        let started = futures::future::join_all((0..batch).map(|_| {
            tokio::task::spawn_blocking(|| {
                Sandbox::start(SandboxOptions::default()).expect("start a sandbox")
            })
        }))
        .await;
        pool.extend(started.into_iter().map(Result::unwrap));
    }
    println!(
        "sandboxes: {} started in {:.1} s",
        pool.len(),
        started.elapsed().as_secs_f64()
    );
    let names: Vec<String> = (0..n + 2)
        .map(|i| match i {
            0 => "bench-warmup".to_string(),
            1 => "bench-lone".to_string(),
            i => format!("bench-{:02}", i - 2),
        })
        .collect();
    let ports: Vec<u16> = pool.iter().map(|s| s.port).collect();
    let concurrency = n.to_string();
    let recipes = names.clone();
    let story = Story::start_with_env(
        move |files, _| {
            // One release pattern per recipe: `release-<recipe>-<version>` builds it.
            let mut config = String::from(
                "[defaults]\nregion = \"us-east-1\"\nregions = [\"us-east-1\"]\n\
                 kms_key = \"alias/ami\"\naccount_role = \"bakery-ami-copy\"\n",
            );
            for name in &recipes {
                config.push_str(&format!(
                    "\n[[tags]]\npattern = \"release-{name}-*\"\nrecipes = [\"{name}\"]\n"
                ));
            }
            files.insert("bakery.toml".into(), config);
            for (name, port) in recipes.iter().zip(&ports) {
                files.insert(
                    format!("recipes/{name}/recipe.toml"),
                    bench_recipe(name, *port),
                );
                files.insert(
                    format!("recipes/{name}/files/motd"),
                    "Built by bakery.\n".into(),
                );
            }
        },
        &[
            ("BAKERY_WORKERS__CONCURRENCY", &concurrency),
            ("BAKERY_LOG", "warn"),
        ],
    )
    .await;
    let ec2 = story.check.ec2(&target(HOME, "us-east-1")).unwrap();
    let keys = tokio::spawn(authorize_key_pairs(
        ec2,
        pool.iter()
            .map(|s| s.path("/home/builder/.ssh/authorized_keys"))
            .collect(),
    ));
    story
        .proxy
        .set_ec2_latency(Duration::from_millis(latency_ms));
    let timeout = Duration::from_secs(3600);

    // Lone builds: a warm-up, then the one measured.
    let mut lone = 0.0;
    let mut lone_calls = 0;
    let mut lone_cpu = 0.0;
    for (i, name) in names[..2].iter().enumerate() {
        let tag = format!("release-{name}-1.0.0");
        let payload = push(&story, &tag);
        story.proxy.clear();
        let cpu = cpu_secs(story.bakery.pid());
        deliver(&story, &tag, &payload).await;
        let jobs = finished(&story, std::slice::from_ref(&tag), timeout).await;
        check_succeeded(&story, &jobs).await;
        lone = completion_secs(&jobs[0]);
        lone_calls = story.proxy.requests().len();
        lone_cpu = cpu_secs(story.bakery.pid()) - cpu;
        if i == 0 {
            // The warm-up's calls are judged against deploy/aws/ here. Every later build
            // makes the same calls for another recipe; they are not judged, so the proxy
            // stops reading from moto what the oracle would need, and moto serves
            // bakery's calls only, for the measured lone build and the N alike.
            iam_oracle::assert_allows_all(&story.proxy.requests(), &Policies::deployed());
            story.proxy.stop_judging();
        }
    }

    // N builds at once: every tag is pushed first, then the N deliveries arrive together.
    let tags: Vec<String> = names[2..]
        .iter()
        .map(|n| format!("release-{n}-1.0.0"))
        .collect();
    let payloads: Vec<serde_json::Value> = tags.iter().map(|t| push(&story, t)).collect();
    story.proxy.clear();
    let cpu_before = (
        machine_busy_secs(),
        cpu_secs(story.bakery.pid()),
        cpu_secs(story.moto.pid()),
        cpu_secs(std::process::id()),
    );
    let wall = Instant::now();
    futures::future::join_all(
        tags.iter()
            .zip(&payloads)
            .map(|(t, p)| deliver(&story, t, p)),
    )
    .await;
    let jobs = finished(&story, &tags, timeout).await;
    let wall = wall.elapsed().as_secs_f64();
    let machine_cpu = machine_busy_secs() - cpu_before.0;
    let bakery_cpu = cpu_secs(story.bakery.pid()) - cpu_before.1;
    let moto_cpu = cpu_secs(story.moto.pid()) - cpu_before.2;
    let harness_cpu = cpu_secs(std::process::id()) - cpu_before.3;
    check_succeeded(&story, &jobs).await;
    let calls = story.proxy.requests().len();
    let peak_rss = story.bakery.peak_rss();
    keys.abort();

    let mut times: Vec<f64> = jobs.iter().map(completion_secs).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let slowest = *times.last().unwrap();
    println!("builds at once: {n}, latency per EC2 call: {latency_ms} ms");
    println!(
        "lone build: {lone:.1} s, {lone_calls} AWS calls, {lone_cpu:.2} CPU-s in bakery serve"
    );
    println!(
        "{n} builds: p50 {:.1} s, p99 {:.1} s, slowest {slowest:.1} s, all done in {wall:.1} s",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "slowest concurrent / lone = {:.2} (goal <= 1.5)",
        slowest / lone
    );
    println!(
        "peak RSS of bakery serve: {:.1} MB (goal < 120 MB)",
        peak_rss as f64 / 1e6
    );
    println!(
        "AWS calls while the {n} builds ran: {calls} ({:.1} per build), {:.1} calls/s",
        calls as f64 / n as f64,
        calls as f64 / wall
    );
    // Where the cores went while the N builds ran: the machine saturating says as much
    // about the figures above as bakery does.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    println!(
        "CPU while the {n} builds ran: machine {machine_cpu:.1} CPU-s of {:.1} ({:.0}% of \
         {cores} cores); bakery serve {bakery_cpu:.1} ({:.2} per build); moto {moto_cpu:.1} \
         ({:.1} ms per call); this test's process (the AWS proxy, the harness) \
         {harness_cpu:.1}; the rest (the sandboxed sshd builders) {:.1}",
        cores * wall,
        100.0 * machine_cpu / (cores * wall),
        bakery_cpu / n as f64,
        1000.0 * moto_cpu / calls.max(1) as f64,
        machine_cpu - bakery_cpu - moto_cpu - harness_cpu
    );
    // The floors those figures set, whatever bakery does: moto is one Python process
    // (one core at most), so the N builds cannot all end before moto has done their
    // calls; and the machine cannot do the CPU work of the N builds faster than on all
    // its cores at once.
    println!(
        "floors of slowest / lone on this machine: moto's {moto_cpu:.1} CPU-s on its one \
         core = {:.2}; the {machine_cpu:.1} CPU-s on {cores} cores = {:.2}",
        moto_cpu / lone,
        machine_cpu / cores / lone
    );
}
