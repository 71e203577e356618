//! A proxy in front of moto that records every AWS request bakery sends (service,
//! region, access key, action and parameters, and the answer), can add latency to EC2
//! calls, and can fail chosen calls. moto ignores some parameters (CopyImage's
//! `Encrypted` and `KmsKeyId`), so tests assert on what was *sent*.
//!
//! When dropped, it hands the recording to the IAM oracle ([`super::iam_oracle`]), which
//! fails the test on any call the policies in `deploy/aws/` would deny.
//!
//! moto has no `EnableImageDeprecation`; the proxy answers it the way EC2 does
//! (`<return>true</return>`) and records it like every other call.
//!
//! SSM calls (Parameter Store) are recorded with the parameter's tags as they were
//! before the call, for the oracle's `aws:ResourceTag` conditions.
//!
//! An EC2 or KMS call with `DryRun=true` is answered by the proxy, never forwarded: the
//! IAM oracle judges it, and the answer is AWS's (`DryRunOperation` when allowed,
//! `UnauthorizedOperation` or `AccessDeniedException` when denied).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::iam_oracle::{self, Policies};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub seq: usize,
    pub service: String,
    pub region: String,
    pub access_key: String,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub status: u16,
    pub response: String,
    /// What the IAM oracle needs to know about the resources the call names, read from
    /// moto just before the call was forwarded.
    pub before: Before,
    /// When the call reached the proxy, and when its answer was ready.
    #[serde(skip)]
    pub arrived: Option<std::time::Instant>,
    #[serde(skip)]
    pub answered: Option<std::time::Instant>,
}

/// The state of the resources a call names, as it was when the call arrived: the tags
/// of each existing EC2 resource (by id, or by name for key pairs), the snapshots of an
/// image deregistered with its snapshots, and the KMS key a call uses with its aliases.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Before {
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    pub image_snapshots: Vec<String>,
    pub kms_key_id: Option<String>,
    pub kms_aliases: Vec<String>,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
    /// The call without what the IAM oracle does not read: the answer is cut down to the
    /// id a creating call returned (and an AssumeRole's access key id, never its secret).
    pub fn trimmed(&self) -> Recorded {
        let keep = [
            "AccessKeyId",
            "instanceId",
            "imageId",
            "groupId",
            "keyName",
            "keyPairId",
        ];
        let response = keep
            .iter()
            .filter_map(|tag| {
                self.response_field(tag)
                    .map(|v| format!("<{tag}>{v}</{tag}>"))
            })
            .collect();
        Recorded {
            response,
            ..self.clone()
        }
    }
    /// Values of a list parameter: `Prefix.1`, `Prefix.2`...
    pub fn list(&self, prefix: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.params.get(&format!("{prefix}.{i}")).cloned())
            .collect()
    }
    /// The text of the first `<tag>...</tag>` in the answer.
    pub fn response_field(&self, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let start = self.response.find(&open)? + open.len();
        let end = self.response[start..].find(&format!("</{tag}>"))? + start;
        Some(self.response[start..end].to_string())
    }
}

type Matcher = Box<dyn Fn(&Recorded) -> bool + Send + Sync>;

struct Injection {
    action: String,
    code: String,
    remaining: usize,
    matcher: Matcher,
}

type Edit = Box<dyn Fn(&mut String) + Send + Sync>;

struct Rewrite {
    action: String,
    remaining: usize,
    matcher: Matcher,
    edit: Edit,
}

struct State {
    upstream: SocketAddr,
    records: Mutex<Vec<Recorded>>,
    ec2_latency: Mutex<Duration>,
    injections: Mutex<Vec<Injection>>,
    rewrites: Mutex<Vec<Rewrite>>,
    /// Answers the proxy gives itself, for calls moto does not implement: (action, body).
    answers: Mutex<Vec<(String, String)>>,
    /// How long EC2 keeps answering NotFound for a resource it just created.
    unseen_window: Mutex<Duration>,
    /// Resources created through the proxy: (id or key name, NotFound code, when).
    created: Mutex<Vec<(String, &'static str, std::time::Instant)>>,
    /// The policies `DryRun=true` calls are answered by (see [`dry_run_answer`]).
    dry_run_policies: Mutex<Policies>,
    /// Whether the proxy reads, before forwarding a call, what the IAM oracle needs to
    /// judge it (see [`before`]); off only for a benchmark that judges by hand.
    look_before: std::sync::atomic::AtomicBool,
}

pub struct AwsProxy {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    /// The policies the IAM oracle judges the recording by when the proxy is dropped;
    /// `None` for a test that judges it itself.
    oracle: Mutex<Option<Policies>>,
}

/// When the test is over (and has not already failed), the IAM oracle judges every call
/// the proxy recorded: the test fails on any call `deploy/aws/` would deny.
impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(dir) = std::env::var_os("BAKERY_TEST_RECORDING_DIR") {
            let name = std::thread::current()
                .name()
                .unwrap_or("recording")
                .replace("::", "-");
            let path = std::path::Path::new(&dir).join(format!("{name}.json"));
            let calls: Vec<Recorded> = self.requests().iter().map(Recorded::trimmed).collect();
            let _ = std::fs::write(path, serde_json::to_string_pretty(&calls).unwrap());
        }
        if std::thread::panicking() {
            return;
        }
        if let Some(policies) = self.oracle.lock().unwrap().take() {
            let calls = self.requests();
            if !calls.is_empty() {
                iam_oracle::assert_allows_all(&calls, &policies);
            }
        }
    }
}

impl AwsProxy {
    pub async fn start(upstream_port: u16) -> AwsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            records: Mutex::new(vec![]),
            ec2_latency: Mutex::new(Duration::ZERO),
            injections: Mutex::new(vec![]),
            rewrites: Mutex::new(vec![]),
            answers: Mutex::new(vec![]),
            unseen_window: Mutex::new(Duration::ZERO),
            created: Mutex::new(vec![]),
            dry_run_policies: Mutex::new(Policies::deployed()),
            look_before: std::sync::atomic::AtomicBool::new(true),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, s).await;
                });
            }
        });
        AwsProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            task,
            oracle: Mutex::new(Some(Policies::deployed())),
        }
    }

    /// Takes the automatic IAM check off this proxy, for a test that calls
    /// [`iam_oracle::evaluate`] itself (on other policies, say).
    pub fn judge_by_hand(&self) {
        *self.oracle.lock().unwrap() = None;
    }

    /// For a benchmark, once it has judged a build of the same kind by hand: the
    /// recording is no longer judged, and the proxy no longer reads from moto what the
    /// IAM oracle would need (a DescribeTags, or more, before each call that names a
    /// resource), so moto serves bakery's calls only.
    pub fn stop_judging(&self) {
        self.judge_by_hand();
        self.state
            .look_before
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Answers `DryRun=true` calls by `policies` instead of `deploy/aws/`.
    pub fn judge_dry_runs_by(&self, policies: Policies) {
        *self.state.dry_run_policies.lock().unwrap() = policies;
    }

    pub fn set_ec2_latency(&self, d: Duration) {
        *self.state.ec2_latency.lock().unwrap() = d;
    }

    /// Answers the next `times` calls of `action` for which `matcher` holds with an
    /// error `code` (HTTP 400, not retried by the SDK).
    pub fn fail(
        &self,
        action: &str,
        code: &str,
        times: usize,
        matcher: impl Fn(&Recorded) -> bool + Send + Sync + 'static,
    ) {
        self.state.injections.lock().unwrap().push(Injection {
            action: action.into(),
            code: code.into(),
            remaining: times,
            matcher: Box::new(matcher),
        });
    }

    /// Edits moto's answer to the next `times` calls of `action` for which `matcher`
    /// holds, to answer what AWS would where moto cannot (an image `failed` with a
    /// StateReason, say). The recording keeps the answer bakery got.
    pub fn rewrite(
        &self,
        action: &str,
        times: usize,
        matcher: impl Fn(&Recorded) -> bool + Send + Sync + 'static,
        edit: impl Fn(&mut String) + Send + Sync + 'static,
    ) {
        self.state.rewrites.lock().unwrap().push(Rewrite {
            action: action.into(),
            remaining: times,
            matcher: Box::new(matcher),
            edit: Box::new(edit),
        });
    }

    /// Answers every EC2 call of `action` with `body` (HTTP 200), as EC2 would answer a
    /// call moto does not implement (`GetEbsDefaultKmsKeyId`).
    pub fn answer(&self, action: &str, body: &str) {
        self.state
            .answers
            .lock()
            .unwrap()
            .push((action.into(), body.into()));
    }

    pub fn clear_rewrites(&self) {
        self.state.rewrites.lock().unwrap().clear();
    }

    /// Behaves like EC2's eventual consistency: for `window` after a call creates an
    /// instance, image, security group or key pair, any other call that names it is
    /// answered with the matching NotFound code (`InvalidInstanceID.NotFound`...).
    pub fn unseen_after_create(&self, window: Duration) {
        *self.state.unseen_window.lock().unwrap() = window;
    }

    pub fn clear_failures(&self) {
        self.state.injections.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }

    pub fn calls(&self, action: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    pub fn clear(&self) {
        self.state.records.lock().unwrap().clear();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten_json(&format!("{prefix}.{}", i + 1), v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.into(), s.clone());
        }
        other => {
            out.insert(prefix.into(), other.to_string());
        }
    }
}

async fn handle(mut conn: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers: Vec<(String, String)> = vec![];
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();

    let auth = header("authorization").unwrap_or_default();
    let scope: Vec<String> = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split(',').next())
        .map(|c| c.split('/').map(str::to_string).collect())
        .unwrap_or_default();
    let access_key = scope.first().cloned().unwrap_or_default();
    let region = scope.get(2).cloned().unwrap_or_default();
    let service = scope.get(3).cloned().unwrap_or_default();
    let mut params = BTreeMap::new();
    let action;
    if let Some(target) = header("x-amz-target") {
        action = target.rsplit('.').next().unwrap_or_default().to_string();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            flatten_json("", &v, &mut params);
        }
    } else {
        for pair in body.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(url_decode(k), url_decode(v));
        }
        action = params.get("Action").cloned().unwrap_or_default();
    }
    let mut rec = Recorded {
        seq: 0,
        service: service.clone(),
        region,
        access_key,
        action: action.clone(),
        params,
        status: 0,
        response: String::new(),
        before: Before::default(),
        arrived: Some(std::time::Instant::now()),
        answered: None,
    };
    if state.look_before.load(std::sync::atomic::Ordering::Relaxed) {
        rec.before = before(&state, &auth, &service, &action, &rec.params).await;
    }

    let unseen = {
        let window = *state.unseen_window.lock().unwrap();
        let created = state.created.lock().unwrap();
        created
            .iter()
            .find(|(id, _, at)| {
                at.elapsed() < window
                    && rec.params.iter().any(|(k, v)| {
                        let base = k.split('.').next().unwrap_or_default();
                        v == id
                            && matches!(
                                base,
                                "InstanceId"
                                    | "ImageId"
                                    | "SourceImageId"
                                    | "GroupId"
                                    | "SecurityGroupId"
                                    | "ResourceId"
                                    | "KeyName"
                            )
                    })
            })
            .map(|(_, code, _)| code.to_string())
    };
    let injected = unseen.or_else(|| {
        let mut inj = state.injections.lock().unwrap();
        let mut hit = None;
        for i in inj.iter_mut() {
            if i.remaining > 0 && i.action == action && (i.matcher)(&rec) {
                i.remaining -= 1;
                hit = Some(i.code.clone());
                break;
            }
        }
        hit
    });

    let answer = state
        .answers
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _)| service == "ec2" && a == &action)
        .map(|(_, b)| b.clone());
    let dry_run = matches!(service.as_str(), "ec2" | "kms")
        && rec.params.get("DryRun").map(String::as_str) == Some("true");
    let response: Vec<u8> = if let (true, None) = (dry_run, &injected) {
        dry_run_answer(&state, &rec, header("x-amz-target").is_some()).await
    } else if let Some(code) = injected {
        let (ctype, body) = if header("x-amz-target").is_some() {
            (
                "application/x-amz-json-1.1",
                format!("{{\"__type\":\"{code}\",\"message\":\"injected failure\"}}"),
            )
        } else if service == "ec2" {
            (
                "text/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected failure</Message></Error></Errors><RequestID>injected</RequestID></Response>"
                ),
            )
        } else {
            (
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected failure</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
                ),
            )
        };
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    } else if let Some(body) = answer.clone() {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    } else if service == "ec2" && action == "EnableImageDeprecation" {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><EnableImageDeprecationResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>proxy</requestId><return>true</return></EnableImageDeprecationResponse>";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    } else {
        if service == "ec2" {
            let latency = *state.ec2_latency.lock().unwrap();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
        }
        let mut up = TcpStream::connect(state.upstream).await?;
        let mut out_head = head.lines().next().unwrap_or_default().to_string() + "\r\n";
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out_head.push_str(&format!("{k}: {v}\r\n"));
        }
        out_head.push_str("Connection: close\r\n\r\n");
        // One write, without Nagle's delay: a body written after its head would wait
        // for moto's delayed ACK of the head, a pause no AWS endpoint adds.
        up.set_nodelay(true)?;
        let mut request = out_head.into_bytes();
        request.extend_from_slice(&buf[head_end..]);
        up.write_all(&request).await?;
        let mut resp = vec![];
        up.read_to_end(&mut resp).await?;
        let Some(rhead_end) = find(&resp, b"\r\n\r\n").map(|p| p + 4) else {
            return Ok(());
        };
        let rhead = String::from_utf8_lossy(&resp[..rhead_end]).into_owned();
        let mut new_head = String::new();
        for line in rhead.split("\r\n").filter(|l| !l.is_empty()) {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
                continue;
            }
            new_head.push_str(line);
            new_head.push_str("\r\n");
        }
        new_head.push_str("Connection: close\r\n\r\n");
        let mut body = resp[rhead_end..].to_vec();
        {
            let mut rewrites = state.rewrites.lock().unwrap();
            let explicit = rewrites
                .iter_mut()
                .find(|r| r.remaining > 0 && r.action == action && (r.matcher)(&rec));
            let edit: Option<&(dyn Fn(&mut String) + Send + Sync)> = match explicit {
                Some(r) => {
                    r.remaining -= 1;
                    Some(&*r.edit)
                }
                None => None,
            };
            if let Some(edit) = edit {
                let mut text = String::from_utf8_lossy(&body).into_owned();
                edit(&mut text);
                body = text.into_bytes();
                new_head = new_head
                    .split("\r\n")
                    .map(|l| {
                        if l.to_ascii_lowercase().starts_with("content-length:") {
                            format!("Content-Length: {}", body.len())
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\r\n");
            }
        }
        let mut full = new_head.into_bytes();
        full.extend_from_slice(&body);
        full
    };
    let text = String::from_utf8_lossy(&response).into_owned();
    rec.status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    rec.response = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if rec.status == 200 && service == "ec2" {
        let made = match action.as_str() {
            "RunInstances" => rec
                .response_field("instanceId")
                .map(|id| (id, "InvalidInstanceID.NotFound")),
            "CreateImage" | "CopyImage" => rec
                .response_field("imageId")
                .map(|id| (id, "InvalidAMIID.NotFound")),
            "CreateSecurityGroup" => rec
                .response_field("groupId")
                .map(|id| (id, "InvalidGroup.NotFound")),
            "ImportKeyPair" => rec
                .response_field("keyName")
                .map(|id| (id, "InvalidKeyPair.NotFound")),
            _ => None,
        };
        if let Some((id, code)) = made {
            state
                .created
                .lock()
                .unwrap()
                .push((id, code, std::time::Instant::now()));
        }
    }
    {
        let mut records = state.records.lock().unwrap();
        rec.seq = records.len();
        rec.answered = Some(std::time::Instant::now());
        records.push(rec);
    }
    conn.write_all(&response).await?;
    conn.shutdown().await?;
    Ok(())
}

/// The place a DryRun call takes in the recording the oracle judges it in.
const PROBE_SEQ: usize = 999_999_999;

/// Answers a `DryRun=true` call as AWS does, without forwarding it (moto ignores DryRun
/// for some actions and would carry them out): the IAM oracle judges the call against
/// the proxy's policies, with the `AssumeRole`s recorded so far to tell accounts apart.
/// Allowed: `DryRunOperation` (HTTP 412); denied: `UnauthorizedOperation` (EC2, HTTP
/// 403) or `AccessDeniedException` (KMS, HTTP 400).
async fn dry_run_answer(state: &State, rec: &Recorded, json: bool) -> Vec<u8> {
    let probe = Recorded {
        seq: PROBE_SEQ,
        ..rec.clone()
    };
    let mut calls: Vec<Recorded> = state
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.action == "AssumeRole" && r.status == 200)
        .cloned()
        .collect();
    calls.push(probe);
    let policies = state.dry_run_policies.lock().unwrap().clone();
    let verdict =
        tokio::task::spawn_blocking(move || iam_oracle::evaluate(&calls, &policies)).await;
    let (status, code, message) = match verdict {
        Ok(v) if v.denials.iter().all(|d| d.seq != PROBE_SEQ) => (
            "412 Precondition Failed",
            if json {
                "DryRunOperationException"
            } else {
                "DryRunOperation"
            },
            "Request would have succeeded, but DryRun flag is set.".to_string(),
        ),
        Ok(v) => {
            let denied: Vec<String> = v
                .denials
                .iter()
                .filter(|d| d.seq == PROBE_SEQ)
                .map(|d| format!("{} on {}", d.action, d.resource))
                .collect();
            if json {
                (
                    "400 Bad Request",
                    "AccessDeniedException",
                    format!("User is not authorized to perform: {}", denied.join(", ")),
                )
            } else {
                (
                    "403 Forbidden",
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.".to_string(),
                )
            }
        }
        Err(_) => (
            "500 Internal Server Error",
            "InternalError",
            "the IAM oracle could not judge the call".to_string(),
        ),
    };
    let (ctype, body) = if json {
        (
            "application/x-amz-json-1.1",
            format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
        )
    } else {
        (
            "text/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>dry-run</RequestID></Response>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The ids of existing EC2 resources a request names.
fn named_ids(action: &str, params: &BTreeMap<String, String>) -> Vec<String> {
    if action.starts_with("Describe") || action.starts_with("GetEbs") {
        return vec![];
    }
    params
        .iter()
        .filter(|(k, _)| {
            let base = k.split('.').next().unwrap_or_default();
            matches!(
                base,
                "InstanceId" | "ImageId" | "SnapshotId" | "GroupId" | "ResourceId"
            ) || (base == "SecurityGroupId" && action != "RunInstances")
        })
        .map(|(_, v)| v.clone())
        .collect()
}

/// Reads, from moto and as the caller, what the IAM oracle needs to know about the
/// resources a call names before the call changes them.
async fn before(
    state: &State,
    auth: &str,
    service: &str,
    action: &str,
    params: &BTreeMap<String, String>,
) -> Before {
    let mut out = Before::default();
    match service {
        "ec2" => {
            let ids = named_ids(action, params);
            if !ids.is_empty() {
                let mut q =
                    "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id".to_string();
                for (i, id) in ids.iter().enumerate() {
                    q.push_str(&format!("&Filter.1.Value.{}={}", i + 1, form_encode(id)));
                }
                if let Some(xml) = moto_call(state, auth, None, &q).await {
                    for item in xml_items(&xml) {
                        let (Some(id), Some(key)) =
                            (xml_field(item, "resourceId"), xml_field(item, "key"))
                        else {
                            continue;
                        };
                        let value = xml_field(item, "value").unwrap_or_default();
                        out.tags.entry(id).or_default().insert(key, value);
                    }
                }
                for id in ids {
                    out.tags.entry(id).or_default();
                }
            }
            // RunInstances with a volume under a KMS key uses that key as the caller: the
            // key and its aliases, for the KMS permissions the launch needs.
            if action == "RunInstances" {
                let key = params
                    .iter()
                    .find(|(k, _)| {
                        k.starts_with("BlockDeviceMapping.") && k.ends_with(".Ebs.KmsKeyId")
                    })
                    .map(|(_, v)| v.clone());
                if let Some(key) = key {
                    let kms_auth = auth.replace("/ec2/aws4_request", "/kms/aws4_request");
                    (out.kms_key_id, out.kms_aliases) = kms_key(state, &kms_auth, &key).await;
                }
            }
            if action == "DeleteKeyPair" {
                if let Some(name) = params.get("KeyName") {
                    let q = format!(
                        "Action=DescribeKeyPairs&Version=2016-11-15&KeyName.1={}",
                        form_encode(name)
                    );
                    let tags = moto_call(state, auth, None, &q)
                        .await
                        .map(|xml| tag_set(&xml))
                        .unwrap_or_default();
                    out.tags.insert(name.clone(), tags);
                }
            }
            if action == "DeregisterImage"
                && params.get("DeleteAssociatedSnapshots").map(String::as_str) == Some("true")
            {
                if let Some(image) = params.get("ImageId") {
                    let q = format!(
                        "Action=DescribeImages&Version=2016-11-15&ImageId.1={}",
                        form_encode(image)
                    );
                    if let Some(xml) = moto_call(state, auth, None, &q).await {
                        out.image_snapshots = xml_all(&xml, "snapshotId");
                    }
                    let mut q = "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id"
                        .to_string();
                    for (i, id) in out.image_snapshots.iter().enumerate() {
                        q.push_str(&format!("&Filter.1.Value.{}={}", i + 1, form_encode(id)));
                    }
                    if !out.image_snapshots.is_empty() {
                        if let Some(xml) = moto_call(state, auth, None, &q).await {
                            for item in xml_items(&xml) {
                                let (Some(id), Some(key)) =
                                    (xml_field(item, "resourceId"), xml_field(item, "key"))
                                else {
                                    continue;
                                };
                                let value = xml_field(item, "value").unwrap_or_default();
                                out.tags.entry(id).or_default().insert(key, value);
                            }
                        }
                    }
                }
            }
        }
        "ssm" => {
            // The parameter's tags as they were: what `aws:ResourceTag` conditions see.
            let name = match action {
                "PutParameter" => None,
                _ => params.get("Name").or_else(|| params.get("ResourceId")),
            };
            if let Some(name) = name {
                let body = serde_json::json!({ "ResourceType": "Parameter", "ResourceId": name })
                    .to_string();
                let tags = moto_call(state, auth, Some("AmazonSSM.ListTagsForResource"), &body)
                    .await
                    .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                    .and_then(|v| v.get("TagList").and_then(|l| l.as_array()).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.get("Key")?.as_str()?.to_string(),
                            t.get("Value")?.as_str().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect();
                out.tags.insert(name.clone(), tags);
            }
        }
        "kms" => {
            let Some(key) = params.get("KeyId") else {
                return out;
            };
            (out.kms_key_id, out.kms_aliases) = kms_key(state, auth, key).await;
        }
        _ => {}
    }
    out
}

/// The id of KMS key `key` (an id, ARN, alias or alias ARN) and its aliases, as moto
/// knows them; the key id is empty when no alias names it.
async fn kms_key(state: &State, auth: &str, key: &str) -> (Option<String>, Vec<String>) {
    let aliases = moto_call(state, auth, Some("TrentService.ListAliases"), "{}")
        .await
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|v| v.get("Aliases").and_then(|a| a.as_array()).cloned())
        .unwrap_or_default();
    let field = |a: &serde_json::Value, f: &str| {
        a.get(f)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let key_id = if let Some(alias) = key
        .strip_prefix("alias/")
        .map(|_| key)
        .or_else(|| key.split_once(":alias/").map(|(_, a)| a))
    {
        let name = if alias.starts_with("alias/") {
            alias.to_string()
        } else {
            format!("alias/{alias}")
        };
        aliases
            .iter()
            .find(|a| field(a, "AliasName") == name)
            .map(|a| field(a, "TargetKeyId"))
            .unwrap_or_default()
    } else {
        key.rsplit("key/").next().unwrap_or(key).to_string()
    };
    let key_aliases = aliases
        .iter()
        .filter(|a| !key_id.is_empty() && field(a, "TargetKeyId") == key_id)
        .map(|a| field(a, "AliasName"))
        .collect();
    (Some(key_id), key_aliases)
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `<item>` blocks of a flat EC2 answer (DescribeTags).
fn xml_items(xml: &str) -> Vec<&str> {
    xml.split("<item>")
        .skip(1)
        .map(|s| s.split("</item>").next().unwrap_or(s))
        .collect()
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// The tags of the first `<tagSet>` of an answer.
fn tag_set(xml: &str) -> BTreeMap<String, String> {
    let Some(set) = xml_field(xml, "tagSet") else {
        return BTreeMap::new();
    };
    xml_items(&set)
        .into_iter()
        .filter_map(|i| {
            Some((
                xml_field(i, "key")?,
                xml_field(i, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

/// One call to moto with the caller's own credentials (moto picks the account from the
/// access key), not recorded: EC2's query protocol, or KMS's and SSM's JSON one when
/// `target` is set.
async fn moto_call(state: &State, auth: &str, target: Option<&str>, body: &str) -> Option<String> {
    let mut up = TcpStream::connect(state.upstream).await.ok()?;
    let (ctype, extra) = match target {
        Some(t) => (
            "application/x-amz-json-1.1",
            format!("X-Amz-Target: {t}\r\n"),
        ),
        None => ("application/x-www-form-urlencoded", String::new()),
    };
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        state.upstream,
        body.len()
    );
    up.write_all(req.as_bytes()).await.ok()?;
    let mut resp = vec![];
    up.read_to_end(&mut resp).await.ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A GetConsoleOutput answer whose `<output>` (base64) is `console`.
pub fn console_output(console: &str) -> impl Fn(&mut String) + Send + Sync + 'static {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(console);
    move |body: &mut String| {
        let Some(start) = body.find("<output>").map(|i| i + "<output>".len()) else {
            return;
        };
        let Some(end) = body[start..].find("</output>").map(|i| i + start) else {
            return;
        };
        body.replace_range(start..end, &encoded);
    }
}
