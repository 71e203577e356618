//! A build log sink that appends a job's lines to its log in the store, in order, without
//! making the build wait on the database, and keeps each step's last lines for failure
//! reports. It touches only the store's job log and the process log.
//!
//! Memory and the store are bounded whatever a build prints:
//! * lines go through a bounded channel to one writer task, which inserts them in
//!   batches (one transaction each); a line that finds the channel full is dropped and
//!   counted;
//! * each job keeps at most [`LogLimits`] lines and bytes of output. Past the cap only
//!   the last [`KEPT_TAIL`] lines are held; when the output stops (bakery logs its own
//!   next message, or the log is flushed) they are written after one line that says how
//!   many lines and bytes were dropped. bakery's own messages are always kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::build::{LogSink, OutputStream};
use crate::config::LogConfig;
use crate::database::{DynStore, JobId};

/// Lines kept per step for a failure report.
const TAIL_LINES: usize = 40;
/// Lines of output kept from the end of what went past the cap.
pub const KEPT_TAIL: usize = 200;
/// Lines waiting for the writer, at most.
const CHANNEL_LINES: usize = 2048;
/// Lines per insert transaction, at most.
const BATCH_LINES: usize = 512;
/// Lines the writer's buffers keep room for between bursts.
const IDLE_LINES: usize = 16;

/// How much build output a job's log keeps.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl From<&LogConfig> for LogLimits {
    fn from(c: &LogConfig) -> Self {
        LogLimits {
            max_lines: c.max_lines,
            max_bytes: c.max_bytes,
        }
    }
}

enum Message {
    Line { step: String, line: String },
    Flush(oneshot::Sender<()>),
}

/// Output past the caps, not yet summarised.
#[derive(Default)]
struct Budget {
    lines: usize,
    bytes: usize,
    /// Lines past the cap, or refused by a full channel, since the last summary.
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The last lines past the cap (step, text).
    tail: VecDeque<(String, String)>,
    /// bakery's own messages so far.
    info_lines: usize,
    /// Totals dropped over the whole job.
    total_dropped_lines: u64,
    total_dropped_bytes: u64,
}

pub struct JobLogSink {
    job: JobId,
    tx: mpsc::Sender<Message>,
    limits: LogLimits,
    budget: Mutex<Budget>,
    tails: Arc<Mutex<BTreeMap<String, VecDeque<String>>>>,
}

impl JobLogSink {
    /// Starts the writer task. Lines are already redacted when they reach a sink.
    pub fn start(store: DynStore, job: JobId, limits: LogLimits) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<Message>(CHANNEL_LINES);
        tokio::spawn(async move {
            // The buffers grow with a burst and shrink after it: a job's writer lives as long
            // as its build, and most of the time it carries a line or two.
            let mut received = Vec::new();
            let mut batch: Vec<(String, String)> = Vec::new();
            while rx.recv_many(&mut received, BATCH_LINES).await > 0 {
                for msg in received.drain(..) {
                    match msg {
                        Message::Line { step, line } => batch.push((step, line)),
                        Message::Flush(done) => {
                            write(&store, job, &mut batch).await;
                            let _ = done.send(());
                        }
                    }
                }
                write(&store, job, &mut batch).await;
                received.shrink_to(IDLE_LINES);
                batch.shrink_to(IDLE_LINES);
            }
        });
        Arc::new(JobLogSink {
            job,
            tx,
            limits,
            budget: Mutex::default(),
            tails: Arc::default(),
        })
    }

    /// Waits until every line sent so far is in the store, with the summary of what was
    /// dropped and the last lines past the cap.
    pub async fn flush(&self) {
        for msg in self.summarise() {
            let _ = self.tx.send(msg).await;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The last lines logged under `step`.
    pub fn tail(&self, step: &str) -> Vec<String> {
        self.tails
            .lock()
            .expect("tails poisoned")
            .get(step)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Lines and bytes of output dropped so far.
    pub fn dropped(&self) -> (u64, u64) {
        let b = self.budget.lock().expect("budget poisoned");
        (b.total_dropped_lines, b.total_dropped_bytes)
    }

    /// The summary line and the held tail, if output was dropped since the last one.
    fn summarise(&self) -> Vec<Message> {
        let mut b = self.budget.lock().expect("budget poisoned");
        if b.dropped_lines == 0 {
            return vec![];
        }
        let step = b
            .tail
            .front()
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| "job".into());
        let summary = format!(
            "… {} lines of output dropped ({} bytes): the log keeps the first {} lines or {} bytes of output, then the last {} lines",
            b.dropped_lines, b.dropped_bytes, self.limits.max_lines, self.limits.max_bytes, KEPT_TAIL
        );
        b.dropped_lines = 0;
        b.dropped_bytes = 0;
        let mut out = vec![Message::Line {
            step,
            line: summary,
        }];
        out.extend(
            b.tail
                .drain(..)
                .map(|(step, line)| Message::Line { step, line }),
        );
        out
    }

    /// Queues a line for the writer; a full channel drops it (and counts it).
    fn send(&self, b: &mut Budget, step: &str, line: String) {
        let len = line.len() as u64;
        if self
            .tx
            .try_send(Message::Line {
                step: step.to_string(),
                line,
            })
            .is_err()
        {
            b.dropped_lines += 1;
            b.dropped_bytes += len;
            b.total_dropped_lines += 1;
            b.total_dropped_bytes += len;
        }
    }
}

async fn write(store: &DynStore, job: JobId, batch: &mut Vec<(String, String)>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.append_job_log_batch(job, batch).await {
        tracing::warn!(
            job,
            "cannot append {} lines to the job log: {e:#}",
            batch.len()
        );
    }
    batch.clear();
}

impl LogSink for JobLogSink {
    fn line(&self, step: &str, stream: OutputStream, line: &str) {
        let text = match stream {
            OutputStream::Info => line.to_string(),
            OutputStream::Stdout => format!("| {line}"),
            OutputStream::Stderr => format!("! {line}"),
        };
        {
            let mut tails = self.tails.lock().expect("tails poisoned");
            let tail = tails.entry(step.to_string()).or_default();
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.clone());
        }
        let own_message = stream == OutputStream::Info && {
            let mut b = self.budget.lock().expect("budget poisoned");
            b.info_lines += 1;
            b.info_lines <= self.limits.max_lines
        };
        if own_message {
            // bakery's own messages are few: kept, after what the output dropped. Should
            // there be more than `max_lines` of them, the rest count as output.
            tracing::info!(job = self.job, step, "{text}");
            let held = self.summarise();
            let mut b = self.budget.lock().expect("budget poisoned");
            for msg in held {
                if let Message::Line { step, line } = msg {
                    self.send(&mut b, &step, line);
                }
            }
            self.send(&mut b, step, text);
            return;
        }
        let mut b = self.budget.lock().expect("budget poisoned");
        if b.lines < self.limits.max_lines && b.bytes + text.len() <= self.limits.max_bytes {
            b.lines += 1;
            b.bytes += text.len();
            tracing::info!(job = self.job, step, "{text}");
            self.send(&mut b, step, text);
            return;
        }
        // Past the cap: hold the last lines, count the rest.
        if b.tail.len() == KEPT_TAIL {
            if let Some((_, old)) = b.tail.pop_front() {
                b.dropped_lines += 1;
                b.dropped_bytes += old.len() as u64;
                b.total_dropped_lines += 1;
                b.total_dropped_bytes += old.len() as u64;
            }
        }
        b.tail.push_back((step.to_string(), text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::BuildLog;
    use crate::database::{JobKind, NewJob, SqlStore};
    use crate::redact::Redactor;

    async fn job(store: &DynStore) -> JobId {
        store
            .enqueue_job(&NewJob {
                kind: JobKind::Release,
                repo: "a/b".into(),
                git_ref: "release-1".into(),
                sha: "abc".into(),
                pr_number: None,
                dedup_key: "k".into(),
                payload: serde_json::json!({}),
            })
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn lines_reach_the_store_in_order_redacted() {
        let store: DynStore = Arc::new(SqlStore::open_sqlite_memory().await.unwrap());
        let job = job(&store).await;
        let sink = JobLogSink::start(store.clone(), job, (&LogConfig::default()).into());
        let redactor = Redactor::new();
        redactor.add("s3cr3t-token");
        let log = BuildLog::new(redactor, vec![sink.clone()]);
        for i in 0..50 {
            log.output(
                "provision",
                OutputStream::Stdout,
                &format!("line {i} s3cr3t-token"),
            );
        }
        log.info("image", "creating image");
        sink.flush().await;
        let lines = store.job_log(job).await.unwrap();
        assert_eq!(lines.len(), 51);
        assert_eq!(lines[0].message, "| line 0 ***");
        assert_eq!(lines[50].step, "image");
        let tail = sink.tail("provision");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "| line 49 ***");
    }

    #[tokio::test]
    async fn past_the_cap_the_log_keeps_the_start_the_end_and_what_it_dropped() {
        let store: DynStore = Arc::new(SqlStore::open_sqlite_memory().await.unwrap());
        let job = job(&store).await;
        let limits = LogLimits {
            max_lines: 100,
            max_bytes: 1 << 20,
        };
        let sink = JobLogSink::start(store.clone(), job, limits);
        let log = BuildLog::new(Redactor::new(), vec![sink.clone()]);
        log.info("provision", "$ yes");
        for i in 0..10_000 {
            log.output("provision", OutputStream::Stdout, &format!("y{i:04}"));
            if i % 256 == 0 {
                // The writer keeps up with a build that prints at a human pace.
                tokio::task::yield_now().await;
            }
        }
        log.info("cleanup", "deleted the builder");
        sink.flush().await;
        let lines: Vec<String> = store
            .job_log(job)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(lines[1], "| y0000", "the start is kept");
        let summary = lines
            .iter()
            .position(|l| l.contains("lines of output dropped"))
            .expect("a summary line");
        assert!(
            lines[summary].starts_with("… 9700 lines of output dropped (67900 bytes)"),
            "{}",
            lines[summary]
        );
        assert_eq!(summary, 101);
        assert_eq!(lines[summary + KEPT_TAIL], "| y9999", "the end is kept");
        assert_eq!(lines.last().unwrap(), "deleted the builder");
        assert_eq!(lines.len(), 1 + 100 + 1 + KEPT_TAIL + 1);
        assert_eq!(sink.dropped(), (9700, 67900));
        assert_eq!(sink.tail("provision").last().unwrap(), "| y9999");
    }
}
