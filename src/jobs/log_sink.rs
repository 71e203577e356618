//! A build log sink that appends every line to the job's log in the store, in order,
//! without making the build wait on the database, and keeps each step's last lines for
//! failure reports.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::build::{LogSink, OutputStream};
use crate::database::{DynStore, JobId};

/// Lines kept per step for a failure report.
const TAIL_LINES: usize = 40;

enum Message {
    Line { step: String, line: String },
    Flush(oneshot::Sender<()>),
}

pub struct JobLogSink {
    tx: mpsc::UnboundedSender<Message>,
    tails: Arc<Mutex<BTreeMap<String, VecDeque<String>>>>,
}

impl JobLogSink {
    /// Starts the writer task. Lines are already redacted when they reach a sink.
    pub fn start(store: DynStore, job: JobId) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    Message::Line { step, line } => {
                        if let Err(e) = store.append_job_log(job, &step, &line).await {
                            tracing::warn!(job, "cannot append to the job log: {e:#}");
                        }
                    }
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Arc::new(JobLogSink {
            tx,
            tails: Arc::default(),
        })
    }

    /// Waits until every line sent so far is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
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
        let _ = self.tx.send(Message::Line {
            step: step.to_string(),
            line: text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::BuildLog;
    use crate::database::{JobKind, NewJob, SqlStore};
    use crate::redact::Redactor;

    #[tokio::test]
    async fn lines_reach_the_store_in_order_redacted() {
        let store: DynStore = Arc::new(SqlStore::open_sqlite_memory().await.unwrap());
        let job = store
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
            .unwrap();
        let sink = JobLogSink::start(store.clone(), job);
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
}
