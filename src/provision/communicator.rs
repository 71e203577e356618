//! The SSH connection to a builder (russh): connecting with retries under a time budget,
//! host key checks, commands with output streamed line by line into the build log, and
//! commands fed from a local stream (uploads).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use russh::client::{self, Handle, Msg};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig};
use tokio_util::sync::CancellationToken;

use super::host_key::{HostKeyDecision, HostKeyPolicy};
use super::lines::{LineBuffer, Tail};
use super::SshTarget;
use crate::build::{BuildLog, OutputStream};
use crate::retry::RetryPolicy;

/// Backoff between connection attempts while a builder boots. The overall limit is
/// [`ConnectOptions::budget`], so `max_attempts` is not what stops it.
pub const SSH_CONNECT: RetryPolicy = RetryPolicy::new(
    "ssh-connect",
    u32::MAX,
    Duration::from_millis(500),
    Duration::from_secs(10),
    Duration::from_secs(30),
);

/// How many stderr lines an error quotes.
pub const STDERR_TAIL_LINES: usize = 20;
/// Most stdout kept for a command whose output is captured.
const MAX_CAPTURE: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Total time allowed to get a working connection: instances take a while to boot.
    pub budget: Duration,
    /// Limit for one attempt (TCP connect, key exchange and authentication).
    pub attempt_timeout: Duration,
    /// A keepalive is sent after this long without hearing from the builder...
    pub keepalive_interval: Duration,
    /// ...and the connection is dropped after this many go unanswered, so a vanished
    /// builder ends a command with an error instead of a hang.
    pub keepalive_max: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            budget: Duration::from_secs(300),
            attempt_timeout: SSH_CONNECT.attempt_timeout,
            keepalive_interval: Duration::from_secs(10),
            keepalive_max: 3,
        }
    }
}

/// Ciphers in bakery's order of preference: AES-GCM runs on the CPU's AES instructions,
/// which makes large uploads several times faster than ChaCha20.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

fn client_config(opts: &ConnectOptions) -> Arc<client::Config> {
    let preferred = russh::Preferred {
        cipher: std::borrow::Cow::Borrowed(CIPHERS),
        ..Default::default()
    };
    Arc::new(client::Config {
        preferred,
        // A large window lets the builder stream output without waiting on us.
        window_size: 16 * 1024 * 1024,
        keepalive_interval: Some(opts.keepalive_interval),
        keepalive_max: opts.keepalive_max,
        nodelay: true,
        ..Default::default()
    })
}

struct ClientHandler {
    policy: HostKeyPolicy,
    refusal: Arc<Mutex<Option<String>>>,
    first_use: Arc<Mutex<bool>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                *self.refusal.lock().expect("poisoned") = Some(
                    "the builder presented a host certificate; bakery verifies plain host keys only"
                        .into(),
                );
                return Ok(false);
            }
        };
        match self.policy.check(key) {
            HostKeyDecision::Accepted { first_use, .. } => {
                *self.first_use.lock().expect("poisoned") = first_use;
                Ok(true)
            }
            HostKeyDecision::Refused { reason } => {
                *self.refusal.lock().expect("poisoned") = Some(reason);
                Ok(false)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    HostKeyRefused(String),
    #[error(
        "the builder refused the build key for user {0:?}; check that the key pair registered for this build is in ~{0}/.ssh/authorized_keys"
    )]
    AuthRefused(String),
    #[error("{0}")]
    Ssh(#[from] russh::Error),
}

/// An open connection to one builder.
pub struct Communicator {
    handle: Handle<ClientHandler>,
    target: SshTarget,
    policy: HostKeyPolicy,
    opts: ConnectOptions,
    fingerprint: String,
    first_use: bool,
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("target", &self.target)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Communicator {
    /// Connects and authenticates, retrying until `opts.budget` runs out. A refused host
    /// key is final: it is not retried.
    pub async fn connect(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        opts: &ConnectOptions,
        log: &BuildLog,
        step: &str,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Communicator> {
        let addr = format!("{}@{}:{}", target.user, target.host, target.port);
        let started = Instant::now();
        let deadline = started + opts.budget;
        let mut attempt: u32 = 0;
        // The builder's refusal of the build key, once seen: the builder's own answer says
        // more than a last attempt cut short by the deadline (or slowed by a busy host).
        let mut refused: Option<String> = None;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let per_attempt = opts.attempt_timeout.min(left).max(Duration::from_secs(1));
            let result = tokio::select! {
                r = tokio::time::timeout(per_attempt, connect_once(target, policy, opts)) => r,
                _ = cancel.cancelled() => anyhow::bail!("cancelled while connecting to {addr}"),
            };
            let err: anyhow::Error = match result {
                Ok(Ok((handle, first_use))) => {
                    let (fingerprint, _) = policy
                        .accepted()
                        .context("connected without an accepted host key")?;
                    return Ok(Communicator {
                        handle,
                        target: target.clone(),
                        policy: policy.clone(),
                        opts: opts.clone(),
                        fingerprint,
                        first_use,
                    });
                }
                Ok(Err(ConnectError::HostKeyRefused(reason))) => {
                    anyhow::bail!("refused the SSH host key of {addr}: {reason}")
                }
                Ok(Err(ConnectError::AuthRefused(user))) => {
                    refused = Some(user.clone());
                    ConnectError::AuthRefused(user).into()
                }
                Ok(Err(e)) => e.into(),
                Err(_) => match &refused {
                    Some(user) => anyhow::Error::from(ConnectError::AuthRefused(user.clone()))
                        .context(format!("the last attempt timed out after {per_attempt:?}")),
                    None => anyhow::anyhow!("attempt timed out after {per_attempt:?}"),
                },
            };
            if Instant::now() >= deadline {
                return Err(err.context(format!(
                    "could not connect to {addr} within {:?} ({attempt} attempts); check that the \
                     instance is running, that its SSH port is reachable from bakery and that the \
                     build key is authorized",
                    opts.budget
                )));
            }
            let wait = SSH_CONNECT
                .backoff(attempt)
                .min(deadline.saturating_duration_since(Instant::now()));
            log.info(
                step,
                format!("waiting for SSH on {addr} (attempt {attempt}: {err:#})"),
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => anyhow::bail!("cancelled while connecting to {addr}"),
            }
        }
    }

    /// Drops this connection and opens a new one to the same builder, which must present
    /// the same host key (after a reboot, say).
    pub async fn reconnect(
        &mut self,
        log: &BuildLog,
        step: &str,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "reconnecting", "en")
            .await;
        let fresh =
            Communicator::connect(&self.target, &self.policy, &self.opts, log, step, cancel)
                .await?;
        *self = fresh;
        Ok(())
    }

    /// The accepted host key's `SHA256:...` fingerprint.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The accepted host key itself (for a known_hosts file).
    pub fn host_key(&self) -> PublicKey {
        self.policy
            .accepted()
            .map(|(_, k)| k)
            .expect("a connected communicator has an accepted host key")
    }

    /// Whether this connection's key was accepted on first use (nothing pinned or known).
    pub fn accepted_on_first_use(&self) -> bool {
        self.first_use
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Whether the connection has ended (dropped by the builder or the network).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Waits until the connection ends or `within` passes. Returns whether it ended.
    pub async fn wait_closed(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.handle.is_closed() {
                return true;
            }
            // A keepalive with a reply notices a dead connection sooner than waiting.
            let _ =
                tokio::time::timeout(Duration::from_millis(500), self.handle.send_keepalive(true))
                    .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.handle.is_closed()
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "done", "en")
            .await;
    }

    /// Runs a command with no input.
    pub async fn exec(
        &self,
        step: &str,
        cmd: &RemoteCommand,
        log: &BuildLog,
        cancel: &CancellationToken,
    ) -> Result<CommandOutput, ExecError> {
        self.exec_with_input(step, cmd, log, cancel, |w| {
            Box::pin(async move {
                w.eof().await?;
                Ok(())
            })
        })
        .await
    }

    /// Runs a command whose standard input `feed` writes (and must end with `eof`).
    /// Output is read while `feed` runs, so neither side can stall the other.
    pub async fn exec_with_input<F>(
        &self,
        step: &str,
        cmd: &RemoteCommand,
        log: &BuildLog,
        cancel: &CancellationToken,
        feed: F,
    ) -> Result<CommandOutput, ExecError>
    where
        F: FnOnce(Arc<ChannelWriteHalf<Msg>>) -> BoxFuture<'static, anyhow::Result<()>>,
    {
        let shown = log.redactor().redact(&cmd.display);
        let started = Instant::now();
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|source| self.start_error(&shown, source))?;
        channel
            .exec(true, cmd.remote.as_bytes())
            .await
            .map_err(|source| self.start_error(&shown, source))?;
        let (mut read, write) = channel.split();
        let write = Arc::new(write);
        let mut feeding = feed(write.clone());
        let mut fed = false;
        let mut feed_error: Option<anyhow::Error> = None;

        let mut stdout_lines = LineBuffer::default();
        let mut stderr_lines = LineBuffer::default();
        let mut stderr_tail = Tail::new(STDERR_TAIL_LINES);
        let mut stdout = Vec::new();
        let mut exit_status: Option<u32> = None;
        let mut exit_signal: Option<String> = None;
        let mut refused = false;
        let deadline = tokio::time::Instant::now() + cmd.timeout;

        let emit_stdout = |line: &str, stdout_log: bool| {
            if stdout_log {
                log.output(step, OutputStream::Stdout, line);
            }
        };

        loop {
            tokio::select! {
                r = &mut feeding, if !fed => {
                    fed = true;
                    if let Err(e) = r {
                        feed_error = Some(e);
                    }
                }
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        if cmd.capture_stdout && stdout.len() < MAX_CAPTURE {
                            stdout.extend_from_slice(&data);
                        }
                        for line in stdout_lines.push(&data) {
                            emit_stdout(&line, cmd.log_stdout);
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        for line in stderr_lines.push(&data) {
                            stderr_tail.push(&log.redactor().redact(&line));
                            log.output(step, OutputStream::Stderr, &line);
                        }
                    }
                    Some(ChannelMsg::ExitStatus { exit_status: s }) => exit_status = Some(s),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        exit_signal = Some(signal_label(&signal_name));
                    }
                    Some(ChannelMsg::Failure) => {
                        refused = true;
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    kill_and_confirm(&write, &mut read).await;
                    return Err(ExecError::TimedOut { command: shown, timeout: cmd.timeout });
                }
                _ = cancel.cancelled() => {
                    kill_and_confirm(&write, &mut read).await;
                    return Err(ExecError::Cancelled { command: shown });
                }
            }
        }
        if let Some(line) = stdout_lines.finish() {
            emit_stdout(&line, cmd.log_stdout);
        }
        if let Some(line) = stderr_lines.finish() {
            stderr_tail.push(&log.redactor().redact(&line));
            log.output(step, OutputStream::Stderr, &line);
        }
        let stderr_tail = stderr_tail.lines();
        if refused && exit_status.is_none() {
            return Err(ExecError::Refused { command: shown });
        }
        match (exit_status, exit_signal) {
            (Some(status), _) => {
                if let Some(e) = feed_error {
                    if status == 0 {
                        return Err(ExecError::Input {
                            command: shown,
                            source: e,
                        });
                    }
                }
                Ok(CommandOutput {
                    exit_status: status,
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    stderr_tail,
                    elapsed: started.elapsed(),
                })
            }
            (None, Some(signal)) => Err(ExecError::Signal {
                command: shown,
                signal,
                stderr_tail,
            }),
            (None, None) => Err(ExecError::ConnectionLost {
                command: shown,
                after: started.elapsed(),
            }),
        }
    }

    fn start_error(&self, shown: &str, source: russh::Error) -> ExecError {
        if self.handle.is_closed() {
            ExecError::ConnectionLost {
                command: shown.to_string(),
                after: Duration::ZERO,
            }
        } else {
            ExecError::Start {
                command: shown.to_string(),
                source,
            }
        }
    }
}

fn signal_label(sig: &Sig) -> String {
    match sig {
        Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

async fn connect_once(
    target: &SshTarget,
    policy: &HostKeyPolicy,
    opts: &ConnectOptions,
) -> Result<(Handle<ClientHandler>, bool), ConnectError> {
    let refusal = Arc::new(Mutex::new(None));
    let first_use = Arc::new(Mutex::new(false));
    let handler = ClientHandler {
        policy: policy.clone(),
        refusal: refusal.clone(),
        first_use: first_use.clone(),
    };
    let connected = client::connect(
        client_config(opts),
        (target.host.as_str(), target.port),
        handler,
    )
    .await;
    let mut handle = match connected {
        Ok(h) => h,
        Err(e) => {
            if let Some(reason) = refusal.lock().expect("poisoned").take() {
                return Err(ConnectError::HostKeyRefused(reason));
            }
            return Err(e.into());
        }
    };
    let hash = if target.key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await?.flatten()
    } else {
        None
    };
    let auth = handle
        .authenticate_publickey(
            target.user.clone(),
            PrivateKeyWithHashAlg::new(target.key.clone(), hash),
        )
        .await?;
    if !auth.success() {
        return Err(ConnectError::AuthRefused(target.user.clone()));
    }
    let first = *first_use.lock().expect("poisoned");
    Ok((handle, first))
}

/// A command for the builder.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    /// What logs and errors call it: the recipe's text rather than bakery's wrapping.
    pub display: String,
    /// The command line the builder's login shell runs.
    pub remote: String,
    /// Hard limit, enforced here: past it the channel is closed and the command fails.
    pub timeout: Duration,
    /// Keep stdout (up to 1 MiB) in [`CommandOutput::stdout`].
    pub capture_stdout: bool,
    /// Send stdout lines to the build log. Stderr always goes there.
    pub log_stdout: bool,
}

impl RemoteCommand {
    /// A command whose output is streamed into the log.
    pub fn new(display: impl Into<String>, remote: impl Into<String>, timeout: Duration) -> Self {
        RemoteCommand {
            display: display.into(),
            remote: remote.into(),
            timeout,
            capture_stdout: false,
            log_stdout: true,
        }
    }

    /// bakery's own plumbing: stdout captured, not logged.
    pub fn internal(
        display: impl Into<String>,
        remote: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        RemoteCommand {
            capture_stdout: true,
            log_stdout: false,
            ..RemoteCommand::new(display, remote, timeout)
        }
    }

    pub fn capturing(mut self) -> Self {
        self.capture_stdout = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub exit_status: u32,
    /// Captured stdout, when asked for (not redacted: redact before showing it).
    pub stdout: String,
    /// The last lines of stderr, redacted.
    pub stderr_tail: Vec<String>,
    pub elapsed: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_status == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "the connection to the builder was lost while running `{command}` (after {after:.1?}); \
         the instance may have crashed, rebooted or been stopped"
    )]
    ConnectionLost { command: String, after: Duration },
    #[error("`{command}` did not finish within {timeout:?}")]
    TimedOut { command: String, timeout: Duration },
    #[error(
        "`{command}` was killed by signal {signal}{}",
        tail_suffix(stderr_tail)
    )]
    Signal {
        command: String,
        signal: String,
        stderr_tail: Vec<String>,
    },
    #[error("cancelled while running `{command}`")]
    Cancelled { command: String },
    #[error("the builder refused to run `{command}`")]
    Refused { command: String },
    #[error("could not start `{command}` on the builder: {source}")]
    Start {
        command: String,
        source: russh::Error,
    },
    #[error("sending input to `{command}` failed: {source:#}")]
    Input {
        command: String,
        source: anyhow::Error,
    },
}

impl ExecError {
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ExecError::ConnectionLost { .. })
    }
}

/// `; last lines of stderr:\n  ...` for an error message, or nothing.
pub fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines of stderr:\n  {}", tail.join("\n  "))
    }
}

/// How long a killed command's end is awaited before the channel is closed anyway.
const KILL_CONFIRM: Duration = Duration::from_secs(10);

/// Kills a command's process group (sshd signals the group of the session's process)
/// and waits, within [`KILL_CONFIRM`], for the server to report its end: a timed-out or
/// cancelled step returns once its processes are gone, not merely asked to go.
async fn kill_and_confirm(write: &ChannelWriteHalf<Msg>, read: &mut ChannelReadHalf) {
    let _ = write.signal(Sig::KILL).await;
    let _ = tokio::time::timeout(KILL_CONFIRM, async {
        loop {
            match read.wait().await {
                Some(ChannelMsg::ExitSignal { .. })
                | Some(ChannelMsg::ExitStatus { .. })
                | Some(ChannelMsg::Close)
                | None => break,
                Some(_) => {}
            }
        }
    })
    .await;
    let _ = write.close().await;
}
