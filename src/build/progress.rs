//! How a build shows its progress: a step-by-step display on a terminal, plain lines
//! otherwise. Both are [`LogSink`]s of the build's [`super::BuildLog`].

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::log::{LogSink, OutputStream};

/// `[step] line` on stderr.
pub struct PlainSink;

impl LogSink for PlainSink {
    fn line(&self, step: &str, stream: OutputStream, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = match stream {
            OutputStream::Info => writeln!(err, "[{step}] {line}"),
            OutputStream::Stdout => writeln!(err, "[{step}] | {line}"),
            OutputStream::Stderr => writeln!(err, "[{step}] ! {line}"),
        };
    }
}

/// One spinner per step; a step is ticked off when the next one starts.
pub struct TerminalSink {
    multi: MultiProgress,
    current: Mutex<Option<(String, ProgressBar)>>,
}

impl Default for TerminalSink {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalSink {
    pub fn new() -> Self {
        TerminalSink {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            current: Mutex::new(None),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {prefix:>11.bold} {wide_msg} {elapsed:.dim}")
            .expect("valid template")
    }

    /// Ticks off the last step.
    pub fn finish(&self) {
        if let Some((step, bar)) = self.current.lock().expect("progress lock").take() {
            bar.finish_with_message(format!("done ({step})"));
        }
    }
}

impl LogSink for TerminalSink {
    fn line(&self, step: &str, stream: OutputStream, line: &str) {
        let mut current = self.current.lock().expect("progress lock");
        let same = current.as_ref().is_some_and(|(s, _)| s == step);
        if !same {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(Self::style());
            bar.set_prefix(step.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            *current = Some((step.to_string(), bar));
        }
        let (_, bar) = current.as_ref().expect("set above");
        match stream {
            OutputStream::Info => {
                let _ = self.multi.println(format!("  {step}: {line}"));
                bar.set_message(line.to_string());
            }
            _ => bar.set_message(line.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_display_follows_steps_without_a_terminal() {
        let sink = TerminalSink {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            current: Mutex::new(None),
        };
        sink.line("preflight", OutputStream::Info, "checking");
        sink.line("preflight", OutputStream::Stdout, "more");
        assert_eq!(
            sink.current.lock().unwrap().as_ref().unwrap().0,
            "preflight"
        );
        sink.line("access", OutputStream::Info, "key pair imported");
        assert_eq!(sink.current.lock().unwrap().as_ref().unwrap().0, "access");
        sink.finish();
        assert!(sink.current.lock().unwrap().is_none());
    }
}
