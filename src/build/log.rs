//! The build log: every line a build produces, redacted, fanned out to sinks
//! (the terminal progress display, tracing, the job's log in the store).

use std::sync::Arc;

use crate::redact::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// bakery's own progress messages.
    Info,
    Stdout,
    Stderr,
}

/// Receives redacted log lines. Implementations must not block for long: buffer instead.
pub trait LogSink: Send + Sync {
    fn line(&self, step: &str, stream: OutputStream, line: &str);
}

/// Cheap to clone. Every line goes through the redactor before any sink sees it.
#[derive(Clone)]
pub struct BuildLog {
    sinks: Arc<Vec<Arc<dyn LogSink>>>,
    redactor: Redactor,
}

impl std::fmt::Debug for BuildLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildLog")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl BuildLog {
    pub fn new(redactor: Redactor, sinks: Vec<Arc<dyn LogSink>>) -> Self {
        BuildLog {
            sinks: Arc::new(sinks),
            redactor,
        }
    }

    /// A log that only goes to `tracing`.
    pub fn tracing_only(redactor: Redactor) -> Self {
        Self::new(redactor, vec![Arc::new(TracingSink)])
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn info(&self, step: &str, message: impl AsRef<str>) {
        self.emit(step, OutputStream::Info, message.as_ref());
    }

    pub fn output(&self, step: &str, stream: OutputStream, line: &str) {
        self.emit(step, stream, line);
    }

    fn emit(&self, step: &str, stream: OutputStream, text: &str) {
        let redacted = self.redactor.redact(text);
        for line in redacted.lines() {
            for sink in self.sinks.iter() {
                sink.line(step, stream, line);
            }
        }
    }
}

/// Writes build lines as tracing events.
pub struct TracingSink;

impl LogSink for TracingSink {
    fn line(&self, step: &str, stream: OutputStream, line: &str) {
        match stream {
            OutputStream::Info => tracing::info!(step, "{line}"),
            OutputStream::Stdout => tracing::info!(step, stream = "stdout", "{line}"),
            OutputStream::Stderr => tracing::info!(step, stream = "stderr", "{line}"),
        }
    }
}

/// Keeps lines in memory; for tests and for failure comments' log tails.
#[derive(Default)]
pub struct MemorySink {
    lines: std::sync::Mutex<Vec<(String, OutputStream, String)>>,
}

impl MemorySink {
    pub fn lines(&self) -> Vec<(String, OutputStream, String)> {
        self.lines.lock().expect("memory sink poisoned").clone()
    }
    pub fn text(&self) -> String {
        self.lines().into_iter().map(|(_, _, l)| l + "\n").collect()
    }
}

impl LogSink for MemorySink {
    fn line(&self, step: &str, stream: OutputStream, line: &str) {
        self.lines.lock().expect("memory sink poisoned").push((
            step.to_string(),
            stream,
            line.to_string(),
        ));
    }
}
