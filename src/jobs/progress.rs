//! Follows a build's log to keep a live step summary: which top-level step runs, which
//! provisioning step inside it, and how long each took. The release job pushes it to the
//! check run while the build runs, and names the failing step in failure reports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::build::{LogSink, OutputStream, Step};
use crate::github::render::{StepProgress, StepState};

#[derive(Debug)]
struct Row {
    step: Step,
    state: StepState,
    started: Option<Instant>,
    elapsed: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    rows: Vec<Row>,
    /// The provisioning step running inside `provision`, by its recipe name.
    detail: Option<String>,
    changed: bool,
}

/// A [`LogSink`] that tracks step boundaries. Cheap to clone.
#[derive(Clone)]
pub struct StepTracker {
    inner: Arc<Mutex<Inner>>,
}

impl Default for StepTracker {
    fn default() -> Self {
        StepTracker {
            inner: Arc::new(Mutex::new(Inner {
                rows: Step::ALL
                    .iter()
                    .map(|s| Row {
                        step: *s,
                        state: StepState::Pending,
                        started: None,
                        elapsed: None,
                    })
                    .collect(),
                detail: None,
                changed: true,
            })),
        }
    }
}

fn top_level(name: &str) -> Option<Step> {
    Step::ALL.iter().copied().find(|s| s.as_str() == name)
}

impl StepTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn enter(inner: &mut Inner, step: Step) {
        let now = Instant::now();
        let Some(idx) = inner.rows.iter().position(|r| r.step == step) else {
            return;
        };
        if inner.rows[idx].state == StepState::Running {
            return;
        }
        for row in inner.rows.iter_mut().take(idx) {
            if row.state == StepState::Running {
                row.state = StepState::Done;
                row.elapsed = row.started.map(|s| now - s);
            } else if row.state == StepState::Pending {
                row.state = StepState::Skipped;
            }
        }
        let row = &mut inner.rows[idx];
        row.state = StepState::Running;
        row.started = Some(now);
        if step != Step::Provision {
            inner.detail = None;
        }
        inner.changed = true;
    }

    /// The step that is running now, e.g. `provision: Install troubleshooting tools`.
    pub fn current(&self) -> String {
        let inner = self.inner.lock().expect("tracker poisoned");
        let running = inner
            .rows
            .iter()
            .rev()
            .find(|r| r.state == StepState::Running)
            .map(|r| r.step);
        match (running, &inner.detail) {
            (Some(Step::Provision), Some(d)) => format!("provision: {d}"),
            (Some(s), _) => s.as_str().to_string(),
            (None, _) => "setup".to_string(),
        }
    }

    /// Marks the running step failed (or every step done on success).
    pub fn finish(&self, success: bool) {
        let mut inner = self.inner.lock().expect("tracker poisoned");
        let now = Instant::now();
        for row in inner.rows.iter_mut() {
            match row.state {
                StepState::Running => {
                    row.state = if success {
                        StepState::Done
                    } else {
                        StepState::Failed
                    };
                    row.elapsed = row.started.map(|s| now - s);
                }
                StepState::Pending if success => row.state = StepState::Skipped,
                _ => {}
            }
        }
        inner.changed = true;
    }

    /// The summary rows, and whether they changed since the last call.
    pub fn snapshot(&self) -> (Vec<StepProgress>, bool) {
        let mut inner = self.inner.lock().expect("tracker poisoned");
        let changed = std::mem::replace(&mut inner.changed, false);
        let detail = inner.detail.clone();
        let now = Instant::now();
        let rows = inner
            .rows
            .iter()
            .map(|r| StepProgress {
                name: match (r.step, r.state, &detail) {
                    (Step::Provision, StepState::Running, Some(d)) => format!("provision: {d}"),
                    (s, _, _) => s.as_str().to_string(),
                },
                state: r.state,
                elapsed: r.elapsed.or_else(|| {
                    (r.state == StepState::Running)
                        .then(|| r.started.map(|s| now - s))
                        .flatten()
                }),
            })
            .collect();
        (rows, changed)
    }
}

impl LogSink for StepTracker {
    fn line(&self, step: &str, stream: OutputStream, _line: &str) {
        let mut inner = self.inner.lock().expect("tracker poisoned");
        match top_level(step) {
            Some(s) => Self::enter(&mut inner, s),
            None if matches!(step, "recover") => {}
            None => {
                // Lines from inside the builder: provisioning steps, stamp, verify, seal.
                Self::enter(&mut inner, Step::Provision);
                if stream == OutputStream::Info && inner.detail.as_deref() != Some(step) {
                    inner.detail = Some(step.to_string());
                    inner.changed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_steps_and_names_the_failing_one() {
        let t = StepTracker::new();
        t.line("credentials", OutputStream::Info, "assuming roles");
        t.line("preflight", OutputStream::Info, "source ami-1");
        t.line("instance", OutputStream::Info, "launched");
        t.line("Install tools", OutputStream::Info, "$ apt-get install");
        t.line("Install tools", OutputStream::Stderr, "E: no such package");
        assert_eq!(t.current(), "provision: Install tools");
        t.finish(false);
        let (rows, changed) = t.snapshot();
        assert!(changed);
        let states: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.state)).collect();
        assert_eq!(states[0], ("credentials", StepState::Done));
        assert_eq!(states[2], ("access", StepState::Skipped));
        assert_eq!(states[4], ("provision", StepState::Failed));
        assert_eq!(states[5], ("image", StepState::Pending));
        assert!(!t.snapshot().1, "no change since the last snapshot");
    }
}
