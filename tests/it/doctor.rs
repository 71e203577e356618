//! `bakery doctor` against moto through the recording proxy, which answers every
//! `DryRun=true` call as AWS does: `DryRunOperation` when the IAM oracle finds the
//! policies allow it, `UnauthorizedOperation` when they do not. The GitHub side is the
//! fake GitHub. Each test runs the real binary, as an operator would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use bakery::aws::{AwsSession, AwsSettings, Target};
use bakery::plan::model::AccountTarget;
use serde_json::{json, Value};

use crate::support::aws_proxy::AwsProxy;
use crate::support::fake_github::FakeGitHub;
use crate::support::iam_oracle::{self, Policies};
use crate::support::moto::Moto;

const HOME: &str = "123456789012";
const OTHER: &str = "222222222222";
const REGION: &str = "us-east-1";
const REPO: &str = "acme/images";
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 31;
const ROLE: &str = "arn:aws:iam::222222222222:role/bakery-ami-copy";
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

const BAKERY_TOML: &str = r#"[[tags]]
pattern = "release-*"

[defaults]
region = "us-east-1"
kms_key = "alias/ami"
account_role = "bakery-ami-copy"
"#;

const RECIPE: &str = r#"description = "A web server image"

[source]
owners = ["amazon"]
name = "amzn2-ami-hvm-*-x86_64-gp2"
architecture = "x86_64"
most_recent = true

[builder]
instance_type = "t3.micro"
ssh_user = "ec2-user"

[[provision]]
type = "shell"
name = "Say hello"
inline = ["echo hello"]

[distribute]
regions = ["us-east-1"]

[[distribute.accounts]]
account_id = "222222222222"
regions = ["us-east-1"]
"#;

fn settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        endpoint_url: Some(endpoint.into()),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "tests",
        ))),
        max_attempts: 3,
        ..AwsSettings::default()
    }
}

fn app_private_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl runs (scripts/github/setup.sh installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The operator's world: moto with `alias/ami` keys in both accounts, the default VPC
/// routed to an internet gateway as AWS makes it, one running builder of another build
/// (CreateImage and GetConsoleOutput are probed on it), the App installed on the recipe
/// repository with what bakery asks for, and the recipe repository on disk.
struct World {
    _moto: Moto,
    proxy: AwsProxy,
    check: AwsSession,
    github: FakeGitHub,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let proxy = AwsProxy::start(moto.port).await;
    let check = AwsSession::connect(settings(&moto.endpoint), REGION)
        .await
        .unwrap();
    check
        .assume_role(
            &AccountTarget {
                account_id: OTHER.into(),
                role_arn: ROLE.into(),
                external_id: None,
            },
            "doctor-setup",
        )
        .await
        .unwrap();
    for account in [HOME, OTHER] {
        let kms = check.kms(&target(account)).unwrap();
        let key = kms.create_key().description("ami").send().await.unwrap();
        kms.create_alias()
            .alias_name("alias/ami")
            .target_key_id(key.key_metadata().unwrap().key_id())
            .send()
            .await
            .unwrap();
    }
    let ec2 = check.ec2(&target(HOME)).unwrap();
    default_route_to_internet(&ec2).await;
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_string();
    ec2.run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(
                    Tag::builder()
                        .key("bakery:build-id")
                        .value("a-running-build")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let github = FakeGitHub::start().await;
    github.set_app(APP_ID, "bakery");
    github.add_repo(REPO, "", Some(INSTALLATION));
    github.set_installation_grants(
        REPO,
        json!({"checks": "write", "contents": "write", "issues": "write", "metadata": "read",
               "pull_requests": "write", "statuses": "write"}),
        &["push", "create", "pull_request", "issue_comment"],
    );

    let dir = tempfile::Builder::new()
        .prefix("bakery-doctor-")
        .tempdir()
        .unwrap();
    let repo = dir.path().join("images");
    std::fs::create_dir_all(repo.join("recipes/web")).unwrap();
    std::fs::write(repo.join("bakery.toml"), BAKERY_TOML).unwrap();
    std::fs::write(repo.join("recipes/web/recipe.toml"), RECIPE).unwrap();
    std::fs::write(dir.path().join("app.pem"), app_private_key()).unwrap();
    World {
        _moto: moto,
        proxy,
        check,
        github,
        dir,
    }
}

fn target(account: &str) -> Target {
    Target {
        account: account.into(),
        region: REGION.into(),
    }
}

/// A default VPC as AWS creates it: its main route table sends 0.0.0.0/0 to an
/// internet gateway.
async fn default_route_to_internet(ec2: &aws_sdk_ec2::Client) {
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    let vpc = vpcs
        .vpcs()
        .iter()
        .find(|v| v.is_default() == Some(true))
        .expect("moto has a default VPC")
        .vpc_id()
        .unwrap()
        .to_string();
    let tables = ec2
        .describe_route_tables()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let has_igw = tables
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
        });
    if has_igw {
        return;
    }
    let igw = ec2.create_internet_gateway().send().await.unwrap();
    let igw = igw
        .internet_gateway()
        .unwrap()
        .internet_gateway_id()
        .unwrap()
        .to_string();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let main = tables
        .route_tables()
        .iter()
        .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        .expect("a main route table")
        .route_table_id()
        .unwrap()
        .to_string();
    ec2.create_route()
        .route_table_id(main)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(igw)
        .send()
        .await
        .unwrap();
}

impl World {
    fn repo(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// `bakery doctor` with the operator's configuration (as `BAKERY_*` settings of the
    /// child only) and `args`.
    async fn doctor(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bakery"));
        c.arg("doctor")
            .arg("--repo")
            .arg(self.repo())
            .args(["--repository", REPO])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env(self.dir.path()));
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    fn env(&self, dir: &Path) -> Vec<(String, String)> {
        let role_key = format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__ROLE_ARN");
        let ext_key = format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__EXTERNAL_ID");
        [
            ("BAKERY_WEBHOOK__SECRETS", "doctor-webhook-secret"),
            ("BAKERY_GITHUB__API_URL", self.github.api_url()),
            ("BAKERY_GITHUB__APP_ID", &APP_ID.to_string()),
            (
                "BAKERY_GITHUB__PRIVATE_KEY_FILE",
                &dir.join("app.pem").display().to_string(),
            ),
            ("BAKERY_AWS__ENDPOINT_URL", &self.proxy.endpoint),
            (role_key.as_str(), ROLE),
            (ext_key.as_str(), "bakery-external-id"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            (
                "AWS_CONFIG_FILE",
                &dir.join("no-aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                &dir.join("no-aws-credentials").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Everything a build could have left, by kind, in both accounts.
    async fn inventory(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for account in [HOME, OTHER] {
            let ec2 = self.check.ec2(&target(account)).unwrap();
            let instances = ec2.describe_instances().send().await.unwrap();
            let n: usize = instances
                .reservations()
                .iter()
                .map(|r| r.instances().len())
                .sum();
            out.insert(format!("{account} instances"), n);
            let keys = ec2.describe_key_pairs().send().await.unwrap();
            out.insert(format!("{account} key pairs"), keys.key_pairs().len());
            let groups = ec2.describe_security_groups().send().await.unwrap();
            out.insert(
                format!("{account} security groups"),
                groups.security_groups().len(),
            );
            let images = ec2.describe_images().owners("self").send().await.unwrap();
            out.insert(format!("{account} images"), images.images().len());
            let kms = self.check.kms(&target(account)).unwrap();
            let keys = kms.list_keys().send().await.unwrap();
            let mut grants = 0;
            for k in keys.keys() {
                let g = kms
                    .list_grants()
                    .key_id(k.key_id().unwrap())
                    .send()
                    .await
                    .unwrap();
                grants += g.grants().len();
            }
            out.insert(format!("{account} kms grants"), grants);
        }
        out
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn checks(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor's JSON ({e}):\n{}\n{}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["checks"].as_array().unwrap().clone()
}

fn find<'a>(checks: &'a [Value], name: &str, target: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name && c["target"].as_str().unwrap().contains(target))
        .unwrap_or_else(|| panic!("no check {name} for {target} in {checks:#?}"))
}

/// With the shipped policies, every check passes: every call a build makes is probed
/// with DryRun in the account and region it is made in, and nothing is created (no
/// instance, key pair, security group, image or grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_with_the_shipped_policies_and_creates_nothing() {
    let w = world().await;
    let before = w.inventory().await;
    let out = w.doctor(&["--format", "json"]).await;
    let list = checks(&out);
    let not_passed: Vec<&Value> = list.iter().filter(|c| c["status"] != "pass").collect();
    assert!(
        not_passed.is_empty(),
        "{not_passed:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    assert_eq!(w.inventory().await, before, "doctor created something");

    for (action, account) in [
        ("RunInstances", HOME),
        ("CreateSecurityGroup", HOME),
        ("ImportKeyPair", HOME),
        ("CreateImage", HOME),
        ("GetConsoleOutput", HOME),
        ("CopyImage", HOME),
        ("CopyImage", OTHER),
        ("DescribeInstances", OTHER),
    ] {
        let c = find(
            &list,
            &format!("ec2:{action}"),
            &format!("account {account}"),
        );
        assert_eq!(c["status"], "pass", "{c}");
    }
    // Every creating call was a DryRun, answered by the proxy as AWS answers one.
    for r in w.proxy.requests() {
        if matches!(
            r.action.as_str(),
            "RunInstances"
                | "CreateSecurityGroup"
                | "ImportKeyPair"
                | "CreateImage"
                | "CopyImage"
                | "CreateGrant"
        ) {
            assert_eq!(
                r.param("DryRun"),
                Some("true"),
                "{} was sent for real",
                r.action
            );
            assert!(r.response.contains("DryRunOperation"), "{}", r.response);
        }
    }
    let run = &w.proxy.calls("RunInstances")[0];
    assert_eq!(
        run.param("TagSpecification.1.ResourceType"),
        Some("instance")
    );
    assert!(
        run.params.values().any(|v| v == "bakery:build-id"),
        "{:?}",
        run.params
    );

    insta::with_settings!({filters => vec![
        (r"\b(i|ami|subnet|vpc|igw|sg|snap)-[0-9a-f]{8,17}\b", "$1-[id]"),
        (r"key/[0-9a-f-]{36}", "key/[id]"),
    ]}, {
        insta::assert_snapshot!("doctor_json_all_pass", stdout(&out));
    });
}

/// A policy missing one action: doctor fails that check, names the action in the fix,
/// and exits non-zero; the other checks still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_action_a_policy_lacks() {
    let w = world().await;
    let mut narrow = Policies::deployed();
    for s in narrow.home["Statement"].as_array_mut().unwrap() {
        if s["Sid"] == "CreateOnlyTaggedBuildResources" {
            let actions = s["Action"].as_array_mut().unwrap();
            actions.retain(|a| a != "ec2:CreateSecurityGroup");
        }
    }
    w.proxy.judge_by_hand();
    w.proxy.judge_dry_runs_by(narrow.clone());
    let out = w.doctor(&[]).await;
    let table = stdout(&out);
    assert!(!out.status.success(), "{table}");
    let failed: Vec<&str> = table.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{table}");
    assert!(failed[0].contains("ec2:CreateSecurityGroup"), "{table}");
    assert!(failed[0].contains("UnauthorizedOperation"), "{table}");
    let fix = table
        .lines()
        .skip_while(|l| !l.starts_with("FAIL"))
        .nth(1)
        .unwrap();
    assert!(
        fix.contains("fix: allow ec2:CreateSecurityGroup") && fix.contains("builder-policy.json"),
        "{fix}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("pass") && l.contains("ec2:RunInstances")),
        "{table}"
    );
    // The narrow policy allows every other call doctor made; the refused one got AWS's
    // own refusal.
    iam_oracle::assert_allows_all(&w.proxy.requests(), &narrow);
}

/// A target role that cannot be assumed (its trust policy refuses the call): the role's
/// check fails with the fix, that account's copy checks are skipped, and a narrower App
/// installation fails the GitHub checks by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_an_unassumable_role_and_a_narrow_installation_with_the_fix() {
    let w = world().await;
    w.proxy.fail("AssumeRole", "AccessDenied", 20, |r| {
        r.param("RoleArn") == Some(ROLE)
    });
    w.github.set_installation_grants(
        REPO,
        json!({"checks": "write", "contents": "read", "metadata": "read"}),
        &["push", "pull_request"],
    );
    let out = w.doctor(&["--format", "json", "--recipe", "web"]).await;
    assert!(!out.status.success());
    let list = checks(&out);
    let role = find(&list, &format!("sts:AssumeRole {ROLE}"), OTHER);
    assert_eq!(role["status"], "fail", "{role}");
    let fix = role["fix"].as_str().unwrap();
    assert!(
        fix.contains("trust policy") && fix.contains("external_id") && fix.contains(HOME),
        "{fix}"
    );
    assert!(
        !fix.contains("bakery-external-id"),
        "the external ID is not printed: {fix}"
    );
    let copy = find(&list, "copy", &format!("account {OTHER}"));
    assert_eq!(copy["status"], "skip", "{copy}");

    let perms = find(&list, "permissions", REPO);
    assert_eq!(perms["status"], "fail");
    let detail = perms["detail"].as_str().unwrap();
    for missing in [
        "contents: write (has read)",
        "issues: write (has none)",
        "statuses: write",
    ] {
        assert!(detail.contains(missing), "{detail}");
    }
    let events = find(&list, "events", REPO);
    assert_eq!(events["status"], "fail");
    assert!(
        events["detail"]
            .as_str()
            .unwrap()
            .contains("create, issue_comment"),
        "{events}"
    );
    // The home account's own checks are unaffected.
    assert_eq!(find(&list, "ec2:RunInstances", HOME)["status"], "pass");
}
