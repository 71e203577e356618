//! The step journal: every step boundary and every resource, before and after its
//! creation, written to the store as it happens, so a build can be cleaned up or resumed
//! after a crash.
//!
//! Entry kinds and their `data`:
//! - `owner` `{pid, host}`: the process running the build (liveness is the build's
//!   heartbeat, see [`super::liveness`]);
//! - `handed_over` `{step}`: its owner stopped on purpose, leaving the build to be resumed;
//! - `step_started` / `step_finished` `{step}`;
//! - `creating` `{type, region, account, lookup}`: before a create call;
//! - `created` `{type, id, region, account, detail}`: after it;
//! - `deleted` `{type, id, region, account}`;
//! - `preflight` (the resolved source image and copy targets), `facts`, `host_key`,
//!   `intermediate`, `copied` (one finished copy): what a resumed build needs.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::{ResourceJournal, ResourceKind, ResourceRef, Target};
use crate::database::{DynStore, JournalEntry, StoredJournalEntry};

/// A create call whose answer is not in the journal (yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    pub region: String,
    pub account: String,
    #[serde(default)]
    pub lookup: Value,
}

impl Pending {
    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

/// A created resource and the details recorded with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveResource {
    pub resource: ResourceRef,
    pub detail: Value,
}

/// What the journal says exists, in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub live: Vec<LiveResource>,
    pub pending: Vec<Pending>,
}

impl Ledger {
    fn creating(&mut self, p: Pending) {
        self.pending.push(p);
    }

    fn created(&mut self, res: ResourceRef, detail: Value) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.kind == res.kind && p.region == res.region && p.account == res.account)
        {
            self.pending.remove(i);
        }
        if !self.live.iter().any(|l| l.resource == res) {
            self.live.push(LiveResource {
                resource: res,
                detail,
            });
        }
    }

    fn deleted(&mut self, res: &ResourceRef) {
        self.live.retain(|l| &l.resource != res);
    }

    fn not_created(&mut self, p: &Pending) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|q| q.kind == p.kind && q.region == p.region && q.account == p.account)
        {
            self.pending.remove(i);
        }
    }
}

/// Everything a journal holds, read back.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub ledger: Ledger,
    pub owner: Option<Owner>,
    /// The last owner handed the build over on purpose (shutdown, lost lease): it no
    /// longer runs, and the next owner resumes it without waiting for its heartbeat.
    pub handed_over: bool,
    pub started_steps: Vec<String>,
    pub finished_steps: Vec<String>,
    /// The last `data` of each note kind (`preflight`, `facts`, `intermediate`...).
    pub notes: std::collections::BTreeMap<String, Value>,
    /// Every `copied` note.
    pub copied: Vec<Value>,
}

impl Replay {
    pub fn from_entries(entries: &[StoredJournalEntry]) -> Self {
        let mut r = Replay::default();
        for e in entries {
            match e.kind.as_str() {
                "owner" => {
                    r.owner = serde_json::from_value(e.data.clone()).ok();
                    r.handed_over = false;
                }
                "handed_over" => r.handed_over = true,
                "step_started" => {
                    if let Some(s) = e.data.get("step").and_then(Value::as_str) {
                        r.started_steps.push(s.to_string());
                    }
                }
                "step_finished" => {
                    if let Some(s) = e.data.get("step").and_then(Value::as_str) {
                        r.finished_steps.push(s.to_string());
                    }
                }
                "creating" => {
                    if let Ok(p) = serde_json::from_value::<Pending>(e.data.clone()) {
                        r.ledger.creating(p);
                    }
                }
                "created" => {
                    if let Ok(res) = serde_json::from_value::<ResourceRef>(e.data.clone()) {
                        let detail = e.data.get("detail").cloned().unwrap_or(Value::Null);
                        r.ledger.created(res, detail);
                    }
                }
                "deleted" => {
                    if let Ok(res) = serde_json::from_value::<ResourceRef>(e.data.clone()) {
                        r.ledger.deleted(&res);
                    }
                }
                "not_created" => {
                    if let Ok(p) = serde_json::from_value::<Pending>(e.data.clone()) {
                        r.ledger.not_created(&p);
                    }
                }
                "copied" => r.copied.push(e.data.clone()),
                other => {
                    r.notes.insert(other.to_string(), e.data.clone());
                }
            }
        }
        r
    }

    pub fn finished(&self, step: &str) -> bool {
        self.finished_steps.iter().any(|s| s == step)
    }

    pub fn note<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Option<T> {
        serde_json::from_value(self.notes.get(kind)?.clone()).ok()
    }
}

/// The process that runs a build. Liveness is the build's heartbeat (see
/// [`super::liveness`]); the owner only tells a build on this host whose process is gone
/// from one that may still run, and names the process in messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub host: String,
}

impl Owner {
    pub fn this_process() -> Self {
        Owner {
            pid: std::process::id(),
            host: hostname(),
        }
    }

    /// Whether the owning process is provably gone: it ran on this host, under another
    /// PID than this process's, and that PID runs nothing now. A process on another host,
    /// or one with this process's PID (a restarted container's PID 1), is not provably
    /// gone: only a stale heartbeat tells.
    pub fn is_gone(&self) -> bool {
        if self.host != hostname() || self.pid == std::process::id() {
            return false;
        }
        let proc = std::path::Path::new("/proc").join(self.pid.to_string());
        match std::fs::read(proc.join("cmdline")) {
            Ok(cmdline) => {
                // A zombie has an empty command line: it is gone.
                cmdline.is_empty()
                    || std::fs::read_to_string(proc.join("stat"))
                        .map(|s| s.contains(") Z "))
                        .unwrap_or(false)
            }
            Err(_) => true,
        }
    }
}

/// This machine's (or container's) hostname.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A build's journal: writes through to the store and keeps the ledger in memory.
pub struct Journal {
    store: DynStore,
    build_id: String,
    ledger: Mutex<Ledger>,
    /// When each step started in this process: its duration goes to the metrics.
    started: Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("build_id", &self.build_id)
            .finish()
    }
}

impl Journal {
    pub fn new(store: DynStore, build_id: &str) -> Self {
        Self::restore(store, build_id, Ledger::default())
    }

    /// Picks up a journal read back with [`Replay`].
    pub fn restore(store: DynStore, build_id: &str, ledger: Ledger) -> Self {
        Journal {
            store,
            build_id: build_id.to_string(),
            ledger: Mutex::new(ledger),
            started: Mutex::default(),
        }
    }

    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    pub fn ledger(&self) -> Ledger {
        self.ledger.lock().expect("journal lock").clone()
    }

    pub async fn append(&self, kind: &str, data: Value) -> anyhow::Result<()> {
        self.store
            .append_journal(
                &self.build_id,
                &JournalEntry {
                    kind: kind.to_string(),
                    data,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn step_started(&self, step: &str) -> anyhow::Result<()> {
        self.started
            .lock()
            .expect("journal lock")
            .insert(step.to_string(), std::time::Instant::now());
        self.append("step_started", json!({ "step": step })).await
    }

    pub async fn step_finished(&self, step: &str) -> anyhow::Result<()> {
        let started = self.started.lock().expect("journal lock").remove(step);
        if let Some(at) = started {
            crate::metrics::metrics()
                .step_duration
                .get_or_create(&crate::metrics::StepLabels { step: step.into() })
                .observe(at.elapsed().as_secs_f64());
        }
        self.append("step_finished", json!({ "step": step })).await
    }
}

fn resource_data(res: &ResourceRef) -> Value {
    serde_json::to_value(res).expect("resource refs serialize")
}

#[async_trait]
impl ResourceJournal for Journal {
    async fn creating(
        &self,
        kind: ResourceKind,
        target: &Target,
        lookup: Value,
    ) -> anyhow::Result<()> {
        let p = Pending {
            kind,
            region: target.region.clone(),
            account: target.account.clone(),
            lookup,
        };
        self.append("creating", serde_json::to_value(&p)?).await?;
        self.ledger.lock().expect("journal lock").creating(p);
        Ok(())
    }

    async fn created(&self, res: &ResourceRef, detail: Value) -> anyhow::Result<()> {
        let mut data = resource_data(res);
        data["detail"] = detail.clone();
        self.append("created", data).await?;
        self.ledger
            .lock()
            .expect("journal lock")
            .created(res.clone(), detail);
        Ok(())
    }

    async fn deleted(&self, res: &ResourceRef) -> anyhow::Result<()> {
        self.append("deleted", resource_data(res)).await?;
        self.ledger.lock().expect("journal lock").deleted(res);
        Ok(())
    }

    async fn not_created(&self, kind: ResourceKind, target: &Target) -> anyhow::Result<()> {
        let p = Pending {
            kind,
            region: target.region.clone(),
            account: target.account.clone(),
            lookup: Value::Null,
        };
        self.append("not_created", serde_json::to_value(&p)?)
            .await?;
        self.ledger.lock().expect("journal lock").not_created(&p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: &str, data: Value) -> StoredJournalEntry {
        StoredJournalEntry {
            seq,
            at: chrono::Utc::now(),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn replay_tracks_live_and_pending_resources() {
        let entries = vec![
            entry(1, "owner", json!({"pid": 42, "host": "h"})),
            entry(2, "step_started", json!({"step": "access"})),
            entry(
                3,
                "creating",
                json!({"type": "key_pair", "region": "r", "account": "1", "lookup": {"name": "k"}}),
            ),
            entry(
                4,
                "created",
                json!({"type": "key_pair", "id": "k", "region": "r", "account": "1", "detail": {}}),
            ),
            entry(
                5,
                "creating",
                json!({"type": "security_group", "region": "r", "account": "1"}),
            ),
            entry(
                6,
                "created",
                json!({"type": "security_group", "id": "sg-1", "region": "r", "account": "1"}),
            ),
            entry(7, "step_finished", json!({"step": "access"})),
            entry(
                8,
                "creating",
                json!({"type": "instance", "region": "r", "account": "1"}),
            ),
            entry(
                9,
                "deleted",
                json!({"type": "key_pair", "id": "k", "region": "r", "account": "1"}),
            ),
            entry(10, "facts", json!({"build_id": "b", "source_ami": "ami-1"})),
        ];
        let r = Replay::from_entries(&entries);
        assert_eq!(
            r.owner,
            Some(Owner {
                pid: 42,
                host: "h".into()
            })
        );
        assert!(r.finished("access"));
        assert!(!r.finished("instance"));
        let live: Vec<_> = r
            .ledger
            .live
            .iter()
            .map(|l| l.resource.id.as_str())
            .collect();
        assert_eq!(live, vec!["sg-1"]);
        assert_eq!(r.ledger.pending.len(), 1);
        assert_eq!(r.ledger.pending[0].kind, ResourceKind::Instance);
        let facts: crate::plan::model::BuildFacts = r.note("facts").unwrap();
        assert_eq!(facts.source_ami, "ami-1");
    }

    /// A copy AWS refused is settled: a restart never looks it up by name again.
    #[test]
    fn a_refused_create_is_not_pending_after_replay() {
        let creating = |seq, region: &str| {
            entry(
                seq,
                "creating",
                json!({"type": "image", "region": region, "account": "1", "lookup": {"name": "n"}}),
            )
        };
        let entries = vec![
            creating(1, "a"),
            creating(2, "b"),
            entry(
                3,
                "not_created",
                json!({"type": "image", "region": "a", "account": "1", "lookup": null}),
            ),
        ];
        let r = Replay::from_entries(&entries);
        assert_eq!(r.ledger.pending.len(), 1);
        assert_eq!(r.ledger.pending[0].region, "b");
    }

    #[test]
    fn only_a_gone_pid_on_this_host_proves_a_build_stopped() {
        assert!(!Owner::this_process().is_gone());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner {
            pid,
            host: hostname(),
        };
        assert!(gone.is_gone());
        let elsewhere = Owner {
            pid,
            host: "another-host".into(),
        };
        assert!(
            !elsewhere.is_gone(),
            "another host's process cannot be checked"
        );
    }
}
