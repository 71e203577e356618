//! The AWS image pipeline against a real moto server: full builds to several regions and
//! accounts, failure injection at each step, kill -9 and restart at each step boundary,
//! the janitor, and immutable releases. Every assertion about what exists is made
//! through the EC2 API; assertions about what bakery asked for (CopyImage's encryption,
//! which moto ignores) are made on the requests recorded by the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use bakery::aws::resource::{find_tagged, TaggedResource};
use bakery::aws::wait::PollSettings;
use bakery::aws::{tags, AwsSession, AwsSettings, ResourceKind, Target};
use bakery::build::hooks::PauseAt;
use bakery::build::liveness::Liveness;
use bakery::build::log::MemorySink;
use bakery::build::{BuildLog, BuildOptions, BuildOutcome, BuildRunner};
use bakery::database::{
    BuildFilter, BuildRecord, BuildState, DynStore, JournalEntry, SqlStore, Store,
};
use bakery::plan::model::*;
use bakery::provision::{ProvisionContext, ProvisionReport, Provisioner, SshTarget};
use bakery::redact::Redactor;

use crate::support::aws_proxy::{console_output, AwsProxy, Recorded};
use crate::support::iam_oracle;
use crate::support::moto::Moto;

const HOME: &str = "123456789012";
const OTHER: &str = "222222222222";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

fn other_account() -> AccountTarget {
    AccountTarget {
        account_id: OTHER.into(),
        role_arn: format!("arn:aws:iam::{OTHER}:role/bakery-ami-copy"),
        external_id: Some(iam_oracle::TARGET_EXTERNAL_ID.into()),
    }
}

/// The environment a `bakery` process needs to reach moto with the test credentials and
/// nothing from the machine's own AWS configuration.
fn moto_credentials_env(dir: &std::path::Path) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", dir.join("no-aws-config").into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials").into(),
        ),
    ]
}

/// The operator's `[policy]` for `bakery build` of this file's plans: the other account
/// with its role and external ID, and the plans' launch permission.
fn operator_policy_env() -> Vec<(String, String)> {
    let account = other_account();
    let key = |k: &str| {
        format!(
            "BAKERY_POLICY__DEFAULT__ACCOUNTS__{}__{k}",
            account.account_id
        )
    };
    vec![
        (key("ROLE_ARN"), account.role_arn.clone()),
        (key("EXTERNAL_ID"), iam_oracle::TARGET_EXTERNAL_ID.into()),
        (
            "BAKERY_POLICY__DEFAULT__LAUNCH_PERMISSIONS".into(),
            "[\"333333333333\"]".into(),
        ),
    ]
}

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        endpoint_url: Some(endpoint.into()),
        endpoints: Default::default(),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "tests",
        ))),
        max_attempts: 3,
        poll: PollSettings {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(500),
            factor: 2.0,
        },
        installation: OURS.into(),
        home_clients: Default::default(),
    }
}

/// moto, the recording proxy in front of it, a session straight to moto for checks, and
/// a KMS key `alias/ami` in every account and region the tests use.
struct World {
    moto: Moto,
    proxy: AwsProxy,
    check: AwsSession,
    keys: BTreeMap<Target, String>,
}

async fn world() -> World {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let proxy = AwsProxy::start(moto.port).await;
    let check = AwsSession::connect(settings(&moto.endpoint), "us-east-1")
        .await
        .unwrap();
    assert_eq!(check.home_account(), HOME);
    check
        .assume_role(&other_account(), "bakery-test-setup")
        .await
        .unwrap();
    let mut keys = BTreeMap::new();
    for account in [HOME, OTHER] {
        for region in REGIONS {
            let t = target(account, region);
            let kms = check.kms(&t).unwrap();
            let key = kms.create_key().description("ami").send().await.unwrap();
            let meta = key.key_metadata().unwrap();
            kms.create_alias()
                .alias_name("alias/ami")
                .target_key_id(meta.key_id())
                .send()
                .await
                .unwrap();
            keys.insert(t, meta.arn().unwrap().to_string());
        }
    }
    World {
        moto,
        proxy,
        check,
        keys,
    }
}

fn target(account: &str, region: &str) -> Target {
    Target {
        account: account.into(),
        region: region.into(),
    }
}

fn copies(regions: &[&str], accounts: &[Option<AccountTarget>]) -> Vec<CopyPlan> {
    let mut out = vec![];
    for a in accounts {
        for r in regions {
            out.push(CopyPlan {
                account: a.clone(),
                region: r.to_string(),
                kms_key_id: Some("alias/ami".into()),
            });
        }
    }
    out
}

fn plan(version: &str, copies: Vec<CopyPlan>) -> BuildPlan {
    BuildPlan {
        repo: Some("acme/images".into()),
        recipe: "base".into(),
        version: version.into(),
        git_sha: SHA.into(),
        build_time: "2026-01-02T03:04:05Z".into(),
        source: SourcePlan::Filter {
            owners: vec!["amazon".into()],
            name: "amzn2-ami-hvm-*-x86_64-gp2".into(),
            architecture: Some("x86_64".into()),
            most_recent: true,
        },
        builder: BuilderPlan {
            region: "us-east-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: None,
            volume_size_gb: 16,
            volume_type: "gp3".into(),
            ssh_user: "ec2-user".into(),
            connect: ConnectVia::PublicIp,
            ssh_cidr: "203.0.113.0/24".into(),
            imdsv2_required: true,
            kms_key: None,
        },
        provision: vec![],
        stamp: StampPlan {
            path: "/etc/release".into(),
            extra: BTreeMap::new(),
        },
        verify: vec![],
        seal: SealPlan::default(),
        image: ImagePlan {
            name: format!("base-{version}"),
            description: format!("base image {version}"),
            tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
            snapshot_tags: BTreeMap::from([("backup".to_string(), "none".to_string())]),
            ephemeral: false,
        },
        distribute: DistributePlan {
            encrypted: true,
            copies,
            launch_permissions: LaunchPermissions {
                account_ids: vec!["333333333333".into()],
                ..LaunchPermissions::default()
            },
            deprecate_after_secs: Some(365 * 24 * 3600),
        },
    }
}

/// What the provisioner was handed: host, port, user, facts, the public key.
type ProvisionCall = (String, u16, String, String, String);

/// A provisioner that records what it was handed and can be told to fail.
#[derive(Default)]
struct RecordingProvisioner {
    calls: Mutex<Vec<ProvisionCall>>,
    fail: Option<String>,
}

#[async_trait]
impl Provisioner for RecordingProvisioner {
    async fn provision(
        &self,
        target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<ProvisionReport> {
        self.calls.lock().unwrap().push((
            target.host.clone(),
            target.port,
            target.user.clone(),
            ctx.plan.build_id.clone(),
            target.key.public_key().to_openssh().unwrap(),
        ));
        if let Some(msg) = &self.fail {
            anyhow::bail!("{msg}");
        }
        Ok(ProvisionReport {
            release_file: ctx.plan.release_file.clone(),
            host_key_fingerprint: "SHA256:testhostkey".into(),
            inventory: None,
        })
    }
}

/// A store in an SQLite file of its own (removed with the returned folder).
async fn temp_store() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("bakery-store-")
        .tempdir()
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("bakery.db").display());
    (Arc::new(SqlStore::connect(&url).await.unwrap()), dir)
}

async fn build(
    w: &World,
    store: &DynStore,
    plan: BuildPlan,
    provisioner: Arc<dyn Provisioner>,
) -> (anyhow::Result<BuildOutcome>, Arc<MemorySink>) {
    let session = Arc::new(
        AwsSession::connect(settings(&w.proxy.endpoint), &plan.builder.region)
            .await
            .unwrap(),
    );
    let sink = Arc::new(MemorySink::default());
    let log = BuildLog::new(Redactor::new(), vec![sink.clone()]);
    let runner = BuildRunner::new(
        session,
        store.clone(),
        provisioner,
        log,
        BuildOptions::default(),
    );
    (runner.run(plan).await, sink)
}

fn plan_targets(plan: &BuildPlan) -> Vec<Target> {
    let mut t: BTreeSet<Target> = plan
        .distribute
        .copies
        .iter()
        .map(|c| {
            target(
                c.account
                    .as_ref()
                    .map(|a| a.account_id.as_str())
                    .unwrap_or(HOME),
                &c.region,
            )
        })
        .collect();
    t.insert(target(HOME, &plan.builder.region));
    t.into_iter().collect()
}

/// Resources tagged with `build_id` left in `targets`, final images and their
/// snapshots excepted when `keep_final`.
async fn leftovers(
    w: &World,
    targets: &[Target],
    build_id: &str,
    keep_final: bool,
) -> Vec<TaggedResource> {
    let mut left = vec![];
    for t in targets {
        for r in find_tagged(&w.check, t, Some(build_id)).await.unwrap() {
            let is_final = r.role.as_deref() == Some(tags::role::FINAL)
                && matches!(
                    r.resource.kind,
                    ResourceKind::Image | ResourceKind::Snapshot
                );
            if !(keep_final && is_final) {
                left.push(r);
            }
        }
    }
    left
}

async fn images_named(w: &World, t: &Target, name: &str) -> Vec<aws_sdk_ec2::types::Image> {
    w.check
        .ec2(t)
        .unwrap()
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .unwrap()
        .images()
        .to_vec()
}

/// No builder, key pair, security group or intermediate image of any build in `t`.
async fn no_builder_resources(w: &World, t: &Target) {
    let ec2 = w.check.ec2(t).unwrap();
    let running = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag-key")
                .values("bakery:build-id")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let n: usize = running
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(n, 0, "builder instances left in {t}");
    let keys = ec2.describe_key_pairs().send().await.unwrap();
    let bakery_keys: Vec<_> = keys
        .key_pairs()
        .iter()
        .filter(|k| k.key_name().unwrap_or_default().starts_with("bakery-"))
        .collect();
    assert!(
        bakery_keys.is_empty(),
        "key pairs left in {t}: {bakery_keys:?}"
    );
    let groups = ec2.describe_security_groups().send().await.unwrap();
    let bakery_groups: Vec<_> = groups
        .security_groups()
        .iter()
        .filter(|g| g.group_name().unwrap_or_default().starts_with("bakery-"))
        .collect();
    assert!(
        bakery_groups.is_empty(),
        "security groups left in {t}: {bakery_groups:?}"
    );
    let images = ec2.describe_images().owners("self").send().await.unwrap();
    let intermediates: Vec<_> = images
        .images()
        .iter()
        .filter(|i| i.name().unwrap_or_default().contains("bakery-intermediate"))
        .collect();
    assert!(
        intermediates.is_empty(),
        "intermediate images left in {t}: {intermediates:?}"
    );
}

fn tag_map(t: &[Tag]) -> BTreeMap<String, String> {
    tags::to_map(t)
}

/// This installation's `bakery:installation` marker: the tests' sessions use the default.
const OURS: &str = "default";

/// How many TagSpecifications a recorded creating call has.
fn tag_specifications(c: &Recorded) -> usize {
    c.params
        .keys()
        .filter(|k| k.starts_with("TagSpecification.") && k.ends_with(".ResourceType"))
        .count()
}

/// The `bakery:installation` value of each TagSpecification of a recorded call.
fn installation_marks(c: &Recorded) -> Vec<String> {
    (1..=tag_specifications(c))
        .filter_map(|n| {
            let prefix = format!("TagSpecification.{n}.Tag.");
            c.params
                .iter()
                .find(|(k, v)| {
                    k.starts_with(&prefix) && k.ends_with(".Key") && *v == "bakery:installation"
                })
                .and_then(|(k, _)| c.param(&k.replace(".Key", ".Value")))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_build_to_three_regions_and_two_accounts() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-1.0.0",
        copies(&REGIONS, &[None, Some(other_account())]),
    );
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, log) = build(&w, &store, plan.clone(), provisioner.clone()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let BuildOutcome::Built {
        build_id,
        manifest,
        resumed,
    } = outcome
    else {
        panic!("expected a build, got {outcome:?}");
    };
    assert!(!resumed);

    // The manifest: Packer's shape, one copy per account and region.
    let m = &manifest.builds[0];
    assert_eq!(m.builder_type, "bakery");
    assert_eq!(m.packer_run_uuid, build_id);
    assert_eq!(manifest.last_run_uuid, build_id);
    assert_eq!(m.copies.len(), 6);
    assert_eq!(m.artifact_id.split(',').count(), 6);
    for part in m.artifact_id.split(',') {
        let (region, ami) = part.split_once(':').unwrap();
        assert!(
            REGIONS.contains(&region) && ami.starts_with("ami-"),
            "{part}"
        );
    }
    let json = serde_json::to_value(&manifest).unwrap();
    assert!(json["builds"][0]["files"].is_null());

    // Every account and region has exactly the manifest's image, with every tag, and
    // so do its snapshots.
    let journal = store.journal(&build_id).await.unwrap();
    let intermediate: serde_json::Value = journal
        .iter()
        .find(|e| e.kind == "intermediate")
        .unwrap()
        .data
        .clone();
    let intermediate_id = intermediate["image_id"].as_str().unwrap().to_string();
    let intermediate_snaps: Vec<String> = intermediate["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(!intermediate_snaps.is_empty());
    for copy in &m.copies {
        let t = target(&copy.account, &copy.region);
        let images = images_named(&w, &t, &plan.image.name).await;
        assert_eq!(
            images.len(),
            1,
            "one image named {} in {t}",
            plan.image.name
        );
        let image = &images[0];
        assert_eq!(image.image_id(), Some(copy.ami.as_str()));
        assert_eq!(image.owner_id(), Some(copy.account.as_str()));
        let tags = tag_map(image.tags());
        for (k, v) in [
            ("ImageVersion", "release-1.0.0"),
            ("bakery:recipe", "base"),
            ("bakery:git-sha", SHA),
            ("bakery:build-id", build_id.as_str()),
            ("team", "platform"),
            ("Name", "base-release-1.0.0"),
            ("bakery:role", "final"),
        ] {
            assert_eq!(
                tags.get(k).map(String::as_str),
                Some(v),
                "tag {k} on {} in {t}",
                copy.ami
            );
        }
        assert!(tags["bakery:source-ami"].starts_with("ami-"));
        assert!(tags.contains_key("bakery:released"));
        assert_eq!(copy.kms_key_id.as_deref(), Some(w.keys[&t].as_str()));
        assert!(copy.encrypted);
        assert!(!copy.snapshot_ids.is_empty());
        let snaps = w
            .check
            .ec2(&t)
            .unwrap()
            .describe_snapshots()
            .set_snapshot_ids(Some(copy.snapshot_ids.clone()))
            .send()
            .await
            .unwrap();
        for s in snaps.snapshots() {
            let st = tag_map(s.tags());
            for k in [
                "ImageVersion",
                "bakery:recipe",
                "bakery:git-sha",
                "bakery:source-ami",
                "bakery:build-id",
                "team",
            ] {
                assert!(
                    st.contains_key(k),
                    "snapshot {:?} in {t} lacks {k}: {st:?}",
                    s.snapshot_id()
                );
            }
            assert_eq!(st.get("backup").map(String::as_str), Some("none"));
        }
    }

    // Nothing else is left: no builder, key pair, security group, intermediate image or
    // its snapshots.
    let targets = plan_targets(&plan);
    let left = leftovers(&w, &targets, &build_id, true).await;
    assert!(left.is_empty(), "left behind: {left:#?}");
    for t in &targets {
        no_builder_resources(&w, t).await;
    }
    let home = target(HOME, "us-east-1");
    let gone = w
        .check
        .ec2(&home)
        .unwrap()
        .describe_snapshots()
        .set_snapshot_ids(Some(intermediate_snaps.clone()))
        .send()
        .await;
    assert!(gone.is_err(), "intermediate snapshots still exist");
    assert!(images_named(
        &w,
        &home,
        &bakery::aws::image::intermediate_name(&plan.image.name, &build_id)
    )
    .await
    .is_empty());

    // What bakery sent: every CopyImage asked for encryption with its region's key, ran
    // from the account that owns the copy, from the intermediate image.
    let copy_calls = w.proxy.calls("CopyImage");
    assert_eq!(copy_calls.len(), 6);
    for c in &copy_calls {
        let ami = c
            .response_field("imageId")
            .expect("CopyImage answered an image id");
        let copy = m
            .copies
            .iter()
            .find(|x| x.ami == ami)
            .expect("copy in manifest");
        let t = target(&copy.account, &copy.region);
        assert_eq!(c.region, copy.region);
        assert_eq!(c.param("Encrypted"), Some("true"), "{c:?}");
        assert_eq!(c.param("KmsKeyId"), Some(w.keys[&t].as_str()), "{c:?}");
        assert_eq!(c.param("SourceImageId"), Some(intermediate_id.as_str()));
        assert_eq!(c.param("SourceRegion"), Some("us-east-1"));
        assert!(c.param("ClientToken").is_some());
        if copy.account == OTHER {
            assert_ne!(
                c.access_key, ACCESS_KEY,
                "copy into {OTHER} must run from that account"
            );
        } else {
            assert_eq!(c.access_key, ACCESS_KEY);
        }
    }
    // Shared with the other account before copying, image and snapshots.
    let shares = w.proxy.calls("ModifyImageAttribute");
    assert!(shares
        .iter()
        .any(|s| s.param("ImageId") == Some(intermediate_id.as_str())
            && s.param("LaunchPermission.Add.1.UserId") == Some(OTHER)));
    let snap_shares = w.proxy.calls("ModifySnapshotAttribute");
    for snap in &intermediate_snaps {
        assert!(snap_shares
            .iter()
            .any(|s| s.param("SnapshotId") == Some(snap.as_str())
                && s.param("Attribute") == Some("createVolumePermission")
                && s.param("OperationType") == Some("add")
                && s.list("UserId") == vec![OTHER.to_string()]));
    }
    // Launch permissions and deprecation on every copy.
    for copy in &m.copies {
        assert!(shares
            .iter()
            .any(|s| s.param("ImageId") == Some(copy.ami.as_str())
                && s.param("LaunchPermission.Add.1.UserId") == Some("333333333333")));
        let dep = w.proxy.calls("EnableImageDeprecation");
        let d = dep
            .iter()
            .find(|d| d.param("ImageId") == Some(copy.ami.as_str()))
            .expect("deprecation requested");
        assert!(
            d.param("DeprecateAt")
                .unwrap()
                .starts_with("2027-01-02T03:04:05"),
            "{d:?}"
        );
    }
    // The roles were assumed with the build id in the session name and the external id.
    let assumed = w.proxy.calls("AssumeRole");
    assert!(!assumed.is_empty());
    for a in &assumed {
        assert_eq!(
            a.param("RoleSessionName"),
            Some(format!("bakery-{build_id}").as_str())
        );
        assert_eq!(a.param("ExternalId"), Some("bakery-external-id"));
        assert_eq!(a.param("RoleArn"), Some(other_account().role_arn.as_str()));
    }
    // The builder: IMDSv2, idempotency token, tags on instance and volumes from creation.
    let run = w.proxy.calls("RunInstances");
    assert_eq!(run.len(), 1);
    let r = &run[0];
    assert_eq!(r.param("MetadataOptions.HttpTokens"), Some("required"));
    assert_eq!(
        r.param("ClientToken"),
        Some(format!("bakery-{build_id}").as_str())
    );
    let specs: Vec<_> = r
        .params
        .iter()
        .filter(|(k, _)| k.ends_with(".ResourceType"))
        .map(|(_, v)| v.clone())
        .collect();
    assert!(
        specs.contains(&"instance".to_string()) && specs.contains(&"volume".to_string()),
        "{specs:?}"
    );
    for action in ["ImportKeyPair", "CreateSecurityGroup", "CreateImage"] {
        let c = &w.proxy.calls(action)[0];
        assert!(
            c.params
                .iter()
                .any(|(k, v)| k.starts_with("TagSpecification") && v == &build_id),
            "{action} must tag bakery:build-id at creation: {c:?}"
        );
    }
    // Every resource carries this installation's marker from creation: each tag
    // specification of every creating call (instance and volumes, key pair, security
    // group, image and snapshots, every copy and its snapshots).
    for action in [
        "RunInstances",
        "ImportKeyPair",
        "CreateSecurityGroup",
        "CreateImage",
        "CopyImage",
    ] {
        for c in w.proxy.calls(action) {
            assert_eq!(
                installation_marks(&c),
                (1..=tag_specifications(&c))
                    .map(|_| OURS.to_string())
                    .collect::<Vec<_>>(),
                "{action} must tag bakery:installation={OURS} on every resource at creation: {c:?}"
            );
        }
    }
    // Port 22 is open to the configured CIDR only.
    let ingress = &w.proxy.calls("AuthorizeSecurityGroupIngress")[0];
    assert_eq!(
        ingress.param("IpPermissions.1.IpRanges.1.CidrIp"),
        Some("203.0.113.0/24")
    );
    assert_eq!(ingress.param("IpPermissions.1.FromPort"), Some("22"));
    // The key pair is ed25519, and only its public half left the process.
    let import = &w.proxy.calls("ImportKeyPair")[0];
    use base64::Engine;
    let material = base64::engine::general_purpose::STANDARD
        .decode(import.param("PublicKeyMaterial").unwrap())
        .unwrap();
    let material = String::from_utf8(material).unwrap();
    assert!(material.starts_with("ssh-ed25519 "), "{material}");
    for req in w.proxy.requests() {
        assert!(!format!("{:?}", req.params).contains("PRIVATE KEY"));
    }
    // The builder went as soon as the intermediate held what it built, before the first
    // copy; the unencrypted intermediate as soon as the copies were there, before the
    // cleanup step deleted the builder's security group.
    let reqs = w.proxy.requests();
    let dereg = reqs
        .iter()
        .find(|r| {
            r.action == "DeregisterImage" && r.param("ImageId") == Some(intermediate_id.as_str())
        })
        .expect("intermediate deregistered");
    let last_copy_wait = reqs
        .iter()
        .filter(|r| {
            r.action == "DescribeImages"
                && m.copies
                    .iter()
                    .any(|c| r.param("ImageId.1") == Some(c.ami.as_str()))
        })
        .map(|r| r.seq)
        .max()
        .unwrap();
    let terminate = reqs
        .iter()
        .find(|r| r.action == "TerminateInstances")
        .expect("builder terminated");
    let first_copy = reqs
        .iter()
        .find(|r| r.action == "CopyImage")
        .expect("copied");
    let sg_deleted = reqs
        .iter()
        .find(|r| r.action == "DeleteSecurityGroup")
        .expect("security group deleted");
    assert!(terminate.seq < first_copy.seq);
    assert!(last_copy_wait < dereg.seq && dereg.seq < sg_deleted.seq);

    // The provisioner got the builder's public address, port 22, the user, the facts and
    // the key that was imported.
    let calls = provisioner.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (host, port, user, provisioned_build_id, public_key) = &calls[0];
    let instance_ip = r
        .response_field("ipAddress")
        .expect("public ip in RunInstances answer");
    assert_eq!(host, &instance_ip);
    assert_eq!(*port, 22);
    assert_eq!(user, "ec2-user");
    assert_eq!(provisioned_build_id, &build_id);
    assert_eq!(public_key.trim(), material.trim());

    // The journal recorded each resource before and after its creation.
    let kinds: Vec<(String, String)> = journal
        .iter()
        .filter(|e| e.kind == "creating" || e.kind == "created")
        .map(|e| (e.kind.clone(), e.data["type"].as_str().unwrap().to_string()))
        .collect();
    for t in ["key_pair", "security_group", "instance", "image"] {
        let creating = kinds
            .iter()
            .filter(|(k, ty)| k == "creating" && ty == t)
            .count();
        let created = kinds
            .iter()
            .filter(|(k, ty)| k == "created" && ty == t)
            .count();
        assert!(
            creating >= 1 && created >= creating,
            "{t}: {creating} creating, {created} created"
        );
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, ty)| k == "creating" && ty == "image")
            .count(),
        7
    );
    let record = store.get_build(&build_id).await.unwrap().unwrap();
    assert_eq!(record.state, BuildState::Succeeded);
    assert!(record.manifest.is_some());
    assert!(log.text().contains("copy 6/6 available"), "{}", log.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_land_in_their_own_account() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let session = AwsSession::connect(settings(&moto.endpoint), "eu-west-1")
        .await
        .unwrap();
    session
        .assume_role(&other_account(), "bakery-check")
        .await
        .unwrap();
    let t = target(OTHER, "eu-west-1");
    let ec2 = session.ec2(&t).unwrap();
    let sg = ec2
        .create_security_group()
        .group_name("probe")
        .description("probe")
        .send()
        .await
        .unwrap();
    // Created in 222222222222: the home account does not see it.
    let home = session.ec2(&target(HOME, "eu-west-1")).unwrap();
    let seen = home
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values("probe").build())
        .send()
        .await
        .unwrap();
    assert!(seen.security_groups().is_empty());
    let mine = ec2
        .describe_security_groups()
        .group_ids(sg.group_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(mine.security_groups()[0].owner_id(), Some(OTHER));
    // A role in one account that claims to be another is refused.
    let wrong = AccountTarget {
        account_id: "444444444444".into(),
        role_arn: format!("arn:aws:iam::{OTHER}:role/bakery-publisher"),
        external_id: None,
    };
    let err = session
        .assume_role(&wrong, "bakery-check")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("belongs to account 222222222222, not 444444444444"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_failures_cost_nothing_and_name_the_fix() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let mut copies = copies(&["us-east-1", "eu-west-1"], &[None, Some(other_account())]);
    copies[3].kms_key_id = Some("alias/missing".into());
    let mut p = plan("release-2.0.0", copies);
    p.source = SourcePlan::Filter {
        owners: vec!["amazon".into()],
        name: "no-such-image-*".into(),
        architecture: None,
        most_recent: true,
    };
    let (result, _) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
    let msg = format!("{:#}", result.unwrap_err());
    assert!(
        msg.contains("KMS key alias/missing not found in eu-west-1 for account 222222222222"),
        "{msg}"
    );
    assert!(
        msg.contains("no source image named \"no-such-image-*\""),
        "{msg}"
    );
    for action in [
        "ImportKeyPair",
        "CreateSecurityGroup",
        "RunInstances",
        "CreateImage",
        "CopyImage",
    ] {
        assert!(w.proxy.calls(action).is_empty(), "{action} was called");
    }
    let builds = store.list_builds(&BuildFilter::default()).await.unwrap();
    assert_eq!(builds[0].state, BuildState::Failed);
}

/// In the builder region one DescribeImages answers the release lookup, the name check and
/// the source filter. That answer also holds this account's images: one named as the
/// release's image is found holding the name, and one whose name matches the source's
/// pattern (newer than every Amazon image) is never taken for the source, whose owners
/// name only Amazon. The builder boots the newest Amazon image, as a request of its own
/// would have found, and no second DescribeImages was asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_regions_lookup_finds_the_source_and_never_takes_this_accounts_image_for_it() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let holder = run_instance(&w, &t, &[]).await;
    let own_lookalike = image_of(&w, &t, &holder, "amzn2-ami-hvm-9.9.99999999-x86_64-gp2").await;
    let taken = plan(
        "release-3.0.0",
        copies(&["us-east-1", "eu-west-1"], &[None]),
    );
    let squatter = image_of(&w, &t, &holder, &taken.image.name).await;
    let (result, _) = build(&w, &store, taken, Arc::new(RecordingProvisioner::default())).await;
    let msg = format!("{:#}", result.unwrap_err());
    assert!(
        msg.contains(&format!("is taken in {t} by {squatter}")),
        "{msg}"
    );

    let newest_amazon = amazon_sources(&w, &t)
        .await
        .into_iter()
        .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
        .unwrap()
        .image_id()
        .unwrap()
        .to_string();
    let p = plan(
        "release-3.0.1",
        copies(&["us-east-1", "eu-west-1"], &[None]),
    );
    w.proxy.clear();
    let (result, log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()));
    let runs = w.proxy.calls("RunInstances");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].param("ImageId"), Some(newest_amazon.as_str()));
    assert_ne!(runs[0].param("ImageId"), Some(own_lookalike.as_str()));
    let by_name_in_builder_region = w
        .proxy
        .calls("DescribeImages")
        .iter()
        .filter(|r| r.region == "us-east-1" && r.param("Filter.1.Name") == Some("name"))
        .count();
    assert_eq!(
        by_name_in_builder_region, 1,
        "one DescribeImages for the lookup and the source"
    );
}

/// Someone registered an image, by hand or with another tool, under the name this
/// release's copies will take, in one of its regions. Pre-flight refuses the build, naming
/// the region and the image, before anything is launched. The lookup that finds it is the
/// one that looks for an earlier release: one DescribeImages per target, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_name_taken_in_one_target_fails_preflight() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let p = plan(
        "release-2.5.0",
        copies(&["us-east-1", "eu-west-1"], &[None]),
    );
    let t = target(HOME, "eu-west-1");
    let holder = run_instance(&w, &t, &[]).await;
    let squatter = image_of(&w, &t, &holder, &p.image.name).await;
    w.proxy.clear();
    let (result, _) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("pre-flight checks failed"), "{msg}");
    assert!(
        msg.contains(&format!(
            "image name {:?} is taken in {t} by {squatter}",
            p.image.name
        )),
        "{msg}"
    );
    assert!(!msg.contains("is taken in us-east-1"), "{msg}");
    for action in ["ImportKeyPair", "RunInstances", "CopyImage"] {
        assert!(w.proxy.calls(action).is_empty(), "{action} was called");
    }
    let by_name = w
        .proxy
        .calls("DescribeImages")
        .iter()
        .filter(|r| r.param("Filter.1.Name") == Some("name"))
        .filter(|r| r.param("Filter.1.Value.1") == Some(p.image.name.as_str()))
        .count();
    assert_eq!(by_name, 2, "one name lookup per target");
}

/// The story of a tag moved to a commit whose recipe also renamed the image: the lookup
/// by the new name sees no release, but the version parameter the first release wrote is
/// never overwritten. The build stops before anything is marked released, and the first
/// release is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_that_renames_the_image_is_refused_by_the_version_parameter() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let p = plan("release-2.6.0", copies(&["us-east-1"], &[None]));
    let (first, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built { manifest, .. } =
        first.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!()
    };
    let released = manifest.builds[0].copies[0].ami.clone();

    let mut moved = p.clone();
    moved.git_sha = "fedcba9876543210fedcba9876543210fedcba98".into();
    moved.image.name = "base-renamed-release-2.6.0".into();
    w.proxy.clear();
    let (second, log) = build(
        &w,
        &store,
        moved.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let err = second.expect_err("a released version is never built again");
    assert!(
        err.chain().any(|e| e
            .downcast_ref::<bakery::aws::parameter::ParameterTaken>()
            .is_some()),
        "{err:#}\n{}",
        log.text()
    );
    // Its copy is kept for the build's next attempt (a failure after distribution), but
    // it is not a release.
    let t = target(HOME, "us-east-1");
    for i in images_named(&w, &t, &moved.image.name).await {
        assert_eq!(
            bakery::aws::tags::value(i.tags(), bakery::aws::tags::RELEASED),
            None
        );
    }
    let first_images = images_named(&w, &t, &p.image.name).await;
    assert_eq!(first_images.len(), 1);
    assert_eq!(first_images[0].image_id(), Some(released.as_str()));
    assert!(
        w.proxy
            .calls("CreateTags")
            .iter()
            .all(|r| r.param("Tag.1.Key") != Some(bakery::aws::tags::RELEASED)),
        "the refused build marked an image released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_step_leaves_nothing() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    struct Case {
        name: &'static str,
        inject: Box<dyn Fn(&AwsProxy)>,
        provisioner_fails: bool,
        expect: &'static str,
        /// Failed after every copy existed: the copies stay for a retry, released only
        /// when the failure came after the release (the builder's cleanup).
        keeps_copies: Option<Released>,
    }
    #[derive(PartialEq)]
    enum Released {
        No,
        Yes,
    }
    let cases = vec![
        Case {
            name: "credentials",
            inject: Box::new(|p| p.fail("AssumeRole", "AccessDenied", 100, |_| true)),
            provisioner_fails: false,
            expect: "cannot assume role",
            keeps_copies: None,
        },
        Case {
            name: "access",
            inject: Box::new(|p| {
                p.fail("CreateSecurityGroup", "UnauthorizedOperation", 1, |_| true)
            }),
            provisioner_fails: false,
            expect: "cannot create the builder's security group",
            keeps_copies: None,
        },
        Case {
            name: "instance",
            inject: Box::new(|p| {
                // Every zone: one zone without capacity passes the launch to the next.
                p.fail("RunInstances", "InsufficientInstanceCapacity", 100, |_| {
                    true
                })
            }),
            provisioner_fails: false,
            expect: "cannot launch a t3.micro builder",
            keeps_copies: None,
        },
        Case {
            name: "provision",
            inject: Box::new(|_| {}),
            provisioner_fails: true,
            expect: "provisioning broke",
            keeps_copies: None,
        },
        Case {
            name: "image",
            inject: Box::new(|p| p.fail("CreateImage", "InvalidParameterValue", 1, |_| true)),
            provisioner_fails: false,
            expect: "cannot create an image of builder",
            keeps_copies: None,
        },
        Case {
            name: "distribute-copy",
            inject: Box::new(|p| {
                p.fail("CopyImage", "InvalidRequest", 1, |r| {
                    r.region == "ap-southeast-2"
                })
            }),
            provisioner_fails: false,
            expect: "cannot copy",
            keeps_copies: None,
        },
        Case {
            name: "distribute-publish",
            inject: Box::new(|p| {
                p.fail("EnableImageDeprecation", "InvalidParameter", 1, |r| {
                    r.region == "eu-west-1"
                })
            }),
            provisioner_fails: false,
            expect: "cannot set the deprecation time",
            keeps_copies: Some(Released::No),
        },
        Case {
            name: "cleanup",
            inject: Box::new(|p| p.fail("DeleteKeyPair", "UnauthorizedOperation", 1, |_| true)),
            provisioner_fails: false,
            expect: "step cleanup failed",
            keeps_copies: Some(Released::Yes),
        },
    ];
    for case in cases {
        w.proxy.clear_failures();
        (case.inject)(&w.proxy);
        let version = format!("fail-{}", case.name);
        let p = plan(&version, copies(&REGIONS, &[None, Some(other_account())]));
        let prov = Arc::new(RecordingProvisioner {
            fail: case
                .provisioner_fails
                .then(|| "provisioning broke".to_string()),
            ..Default::default()
        });
        let (result, log) = build(&w, &store, p.clone(), prov).await;
        let err = match result {
            Ok(o) => panic!(
                "{}: the build should fail, got {o:?}\n{}",
                case.name,
                log.text()
            ),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(case.expect), "{}: {err}", case.name);
        assert!(
            !err.contains("cleanup was incomplete"),
            "{}: {err}",
            case.name
        );
        let record = store
            .list_builds(&BuildFilter {
                version: Some(version.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(record.state, BuildState::Failed, "{}", case.name);
        let targets = plan_targets(&p);
        let left = leftovers(&w, &targets, &record.build_id, case.keeps_copies.is_some()).await;
        assert!(
            left.is_empty(),
            "{}: left behind {left:#?}\n{}",
            case.name,
            log.text()
        );
        for t in &targets {
            let images = images_named(&w, t, &p.image.name).await;
            if let Some(released) = &case.keeps_copies {
                let copy_here = p
                    .distribute
                    .copies
                    .iter()
                    .filter(|c| c.region == t.region)
                    .any(|c| c.account.as_ref().map_or(HOME, |a| &a.account_id) == t.account);
                assert_eq!(images.len(), usize::from(copy_here), "{}: {t}", case.name);
                assert!(
                    images
                        .iter()
                        .all(|i| tag_map(i.tags()).contains_key(tags::RELEASED)
                            == (*released == Released::Yes)),
                    "{}: a kept copy in {t} is marked released only once the release completed",
                    case.name
                );
            } else {
                assert!(images.is_empty(), "{}: copy left in {t}", case.name);
            }
            // A failed release's version parameter goes with it, kept copies or not.
            let name = format!("/bakery/acme/images/base/versions/{version}");
            assert!(
                parameters::parameter(&w, t, &name).await.is_none(),
                "{}: parameter {name} left in {t}\n{}",
                case.name,
                log.text()
            );
            no_builder_resources(&w, t).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_release_builds_nothing_and_a_moved_tag_is_refused() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let mut cs = copies(&["us-east-1", "eu-west-1"], &[None]);
    cs.extend(copies(&["ap-southeast-2"], &[Some(other_account())]));
    let p = plan("release-3.0.0", cs);
    let (first, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let first = first.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()));
    let BuildOutcome::Built { manifest, .. } = first else {
        panic!()
    };

    w.proxy.clear();
    let (second, _) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    match second.unwrap() {
        BuildOutcome::AlreadyReleased {
            images,
            manifest: again,
        } => {
            assert_eq!(images.len(), 3);
            let mut a: Vec<_> = manifest.builds[0]
                .copies
                .iter()
                .map(|c| c.ami.clone())
                .collect();
            let mut b: Vec<_> = again.builds[0]
                .copies
                .iter()
                .map(|c| c.ami.clone())
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
        other => panic!("expected nothing to be built, got {other:?}"),
    }
    for action in ["ImportKeyPair", "RunInstances", "CreateImage", "CopyImage"] {
        assert!(
            w.proxy.calls(action).is_empty(),
            "{action} was called for a released version"
        );
    }

    let mut moved = p.clone();
    moved.git_sha = "fedcba9876543210fedcba9876543210fedcba98".into();
    let (third, _) = build(&w, &store, moved, Arc::new(RecordingProvisioner::default())).await;
    let msg = format!("{:#}", third.unwrap_err());
    assert!(
        msg.contains(&format!("was already released from commit {SHA}")),
        "{msg}"
    );
    assert!(msg.contains("tag a new version"), "{msg}");
    assert!(w.proxy.calls("RunInstances").is_empty());
}

/// An image taken from `instance` in `t` under `name`, as someone would by hand.
async fn image_of(w: &World, t: &Target, instance: &str, name: &str) -> String {
    w.check
        .ec2(t)
        .unwrap()
        .create_image()
        .instance_id(instance)
        .name(name)
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_string()
}

/// The Amazon images the test plans' source filter names in `t`, as EC2 lists them.
async fn amazon_sources(w: &World, t: &Target) -> Vec<aws_sdk_ec2::types::Image> {
    w.check
        .ec2(t)
        .unwrap()
        .describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("name")
                .values("amzn2-ami-hvm-*-x86_64-gp2")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .images()
        .to_vec()
}

async fn run_instance(w: &World, t: &Target, tags: &[(&str, &str)]) -> String {
    let ec2 = w.check.ec2(t).unwrap();
    let image = amazon_sources(w, t).await[0]
        .image_id()
        .unwrap()
        .to_string();
    let mut req = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .build();
        req = req.tag_specifications(spec);
    }
    req.send().await.unwrap().instances()[0]
        .instance_id()
        .unwrap()
        .to_string()
}

async fn instance_alive(w: &World, t: &Target, id: &str) -> bool {
    let out = w
        .check
        .ec2(t)
        .unwrap()
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .as_str()
        != "terminated"
}

/// A target account whose role can no longer be assumed (it left the organisation) and a
/// leftover that cannot be deleted do not stop the janitor: it reports both and cleans up
/// everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_skips_what_it_cannot_reach_and_cleans_the_rest() {
    use bakery::aws::janitor::{self, JanitorOptions};
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let p = plan(
        "release-4.1.0",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    store
        .upsert_build(&BuildRecord {
            build_id: "failed-build".into(),
            job_id: None,
            recipe: "base".into(),
            version: "release-4.1.0".into(),
            git_sha: SHA.into(),
            state: BuildState::Failed,
            plan: serde_json::to_value(&p).unwrap(),
            manifest: None,
            error: Some("broke".into()),
            created_at: chrono::Utc::now() - chrono::Duration::days(2),
            updated_at: chrono::Utc::now() - chrono::Duration::days(2),
        })
        .await
        .unwrap();
    let t = target(HOME, "us-east-1");
    let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let tags = [
        ("bakery:build-id", "failed-build"),
        ("bakery:created-at", old.as_str()),
        ("bakery:installation", OURS),
    ];
    let stuck = run_instance(&w, &t, &tags).await;
    let removable = run_instance(&w, &t, &tags).await;

    w.proxy.fail("AssumeRole", "AccessDenied", 100, |r| {
        r.params.get("RoleArn").is_some_and(|a| a.contains(OTHER))
    });
    let stuck_id = stuck.clone();
    w.proxy.fail(
        "TerminateInstances",
        "UnauthorizedOperation",
        100,
        move |r| r.params.values().any(|v| *v == stuck_id),
    );
    let session = AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
        .await
        .unwrap();
    let targets = janitor::scope_from_store(&session, store.as_ref(), &[])
        .await
        .expect("an account it cannot reach does not fail the scope");
    let report = janitor::run(
        &session,
        store.as_ref(),
        &targets,
        &JanitorOptions {
            ttl: Duration::from_secs(6 * 3600),
            dry_run: false,
            now: chrono::Utc::now(),
        },
    )
    .await
    .expect("the janitor runs to the end");
    assert!(
        report.skipped.iter().any(|s| s.contains(OTHER)),
        "the unreachable account is reported: {:?}",
        report.skipped
    );
    let finding = |id: &str| report.findings.iter().find(|f| f.id == id).unwrap();
    assert!(finding(&stuck).error.is_some(), "{:#?}", report.findings);
    assert_eq!(finding(&removable).deleted, Some(true));
    assert!(!instance_alive(&w, &t, &removable).await);
    assert!(instance_alive(&w, &t, &stuck).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_deletes_leftovers_of_finished_and_unknown_builds_only() {
    use bakery::aws::janitor::{self, JanitorOptions, Verdict};
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let p = plan("release-4.0.0", copies(&["us-east-1"], &[None]));
    let (ok, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built { manifest, .. } =
        ok.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!()
    };
    let product = manifest.builds[0].copies[0].ami.clone();

    let t = target(HOME, "us-east-1");
    let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let now = chrono::Utc::now().to_rfc3339();
    // A crashed build the store never heard of, a failed build's leftover, a young
    // leftover, and resources that are not bakery's at all.
    let unknown = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "unknown-build"),
            ("bakery:created-at", &old),
            ("bakery:installation", OURS),
        ],
    )
    .await;
    let failed_left = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "failed-build"),
            ("bakery:created-at", &old),
            ("bakery:installation", OURS),
        ],
    )
    .await;
    let young = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "young-build"),
            ("bakery:created-at", &now),
            ("bakery:installation", OURS),
        ],
    )
    .await;
    let untagged = run_instance(&w, &t, &[("Name", "someone else's")]).await;
    let ec2 = w.check.ec2(&t).unwrap();
    ec2.create_key_pair()
        .key_name("someone-elses-key")
        .send()
        .await
        .unwrap();
    ec2.create_key_pair()
        .key_name("bakery-unknown-build")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::KeyPair)
                .tags(
                    Tag::builder()
                        .key("bakery:build-id")
                        .value("unknown-build")
                        .build(),
                )
                .tags(Tag::builder().key("bakery:created-at").value(&old).build())
                .tags(
                    Tag::builder()
                        .key("bakery:installation")
                        .value(OURS)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    store
        .upsert_build(&BuildRecord {
            build_id: "failed-build".into(),
            job_id: None,
            recipe: "base".into(),
            version: "release-0.9.0".into(),
            git_sha: SHA.into(),
            state: BuildState::Failed,
            plan: serde_json::to_value(&p).unwrap(),
            manifest: None,
            error: Some("broke".into()),
            created_at: chrono::Utc::now() - chrono::Duration::days(2),
            updated_at: chrono::Utc::now() - chrono::Duration::days(2),
        })
        .await
        .unwrap();

    let opts = |dry_run| JanitorOptions {
        ttl: Duration::from_secs(6 * 3600),
        dry_run,
        now: chrono::Utc::now(),
    };
    let targets = janitor::scope_from_store(&w.check, store.as_ref(), &[])
        .await
        .unwrap();
    assert!(targets.contains(&t));

    let dry = janitor::run(&w.check, store.as_ref(), &targets, &opts(true))
        .await
        .unwrap();
    let verdict = |r: &janitor::JanitorReport, id: &str| {
        r.findings
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.verdict.clone())
    };
    assert!(matches!(verdict(&dry, &unknown), Some(Verdict::Delete(_))));
    assert!(matches!(
        verdict(&dry, &failed_left),
        Some(Verdict::Delete(_))
    ));
    assert!(matches!(
        verdict(&dry, "bakery-unknown-build"),
        Some(Verdict::Delete(_))
    ));
    assert!(matches!(verdict(&dry, &young), Some(Verdict::Keep(_))));
    assert!(matches!(verdict(&dry, &product), Some(Verdict::Keep(_))));
    assert_eq!(
        verdict(&dry, &untagged),
        None,
        "untagged resources are not even looked at"
    );
    assert_eq!(verdict(&dry, "someone-elses-key"), None);
    // A dry run deletes nothing.
    assert!(instance_alive(&w, &t, &unknown).await);
    assert!(instance_alive(&w, &t, &failed_left).await);

    let real = janitor::run(&w.check, store.as_ref(), &targets, &opts(false))
        .await
        .unwrap();
    assert_eq!(real.to_delete().count(), 3, "{:#?}", real.findings);
    assert!(!instance_alive(&w, &t, &unknown).await);
    assert!(!instance_alive(&w, &t, &failed_left).await);
    assert!(instance_alive(&w, &t, &young).await);
    assert!(instance_alive(&w, &t, &untagged).await);
    let keys: Vec<String> = ec2
        .describe_key_pairs()
        .send()
        .await
        .unwrap()
        .key_pairs()
        .iter()
        .filter_map(|k| k.key_name().map(str::to_string))
        .collect();
    assert!(keys.contains(&"someone-elses-key".to_string()));
    assert!(!keys.contains(&"bakery-unknown-build".to_string()));
    assert_eq!(
        images_named(&w, &t, &p.image.name).await.len(),
        1,
        "the product stays"
    );
    let journal = store.journal("failed-build").await.unwrap();
    assert!(journal
        .iter()
        .any(|e| e.kind == "deleted" && e.data["id"] == failed_left.as_str()));
}

/// `kill -9` of `bakery build` at each step boundary, then a restart: nothing is left
/// behind, and the build ends with exactly one image per target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_step_boundary_then_restart() {
    let w = world().await;
    let dir = tempfile::Builder::new()
        .prefix("bakery-kill-")
        .tempdir()
        .unwrap();
    let db = format!("sqlite://{}", dir.path().join("bakery.db").display());
    let steps = [
        ("credentials", false),
        ("preflight", false),
        ("access", false),
        ("instance", false),
        ("provision", false),
        ("image", false),
        ("distribute", true),
        ("distribute:copied", true),
        ("cleanup", true),
        ("manifest", true),
    ];
    for (step, resumes) in steps {
        let version = format!("kill-{}", step.replace(':', "-"));
        let mut p = plan(
            &version,
            copies(&["us-east-1", "eu-west-1"], &[None, Some(other_account())]),
        );
        p.distribute.deprecate_after_secs = None;
        let plan_file = dir.path().join(format!("{version}.json"));
        std::fs::write(&plan_file, serde_json::to_string(&p).unwrap()).unwrap();
        let marker = dir.path().join(format!("paused-{version}"));
        let command = |pause: bool| {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bakery"));
            c.args(["build", "--plan-file"])
                .arg(&plan_file)
                .args([
                    "--state-db",
                    &db,
                    "--endpoint-url",
                    &w.moto.endpoint,
                    "--provisioner",
                    "none",
                ])
                .arg("--repo")
                .arg(dir.path())
                .envs(moto_credentials_env(dir.path()))
                .envs(operator_policy_env())
                .env("BAKERY_LOG", "warn")
                .env_remove("BAKERY_TEST_PAUSE_AT")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if pause {
                c.env("BAKERY_TEST_PAUSE_AT", step)
                    .env("BAKERY_TEST_PAUSE_FILE", &marker);
            }
            c
        };
        let mut first = command(true).spawn().unwrap();
        let started = Instant::now();
        while !marker.exists() {
            if let Some(status) = first.try_wait().unwrap() {
                let out = first.wait_with_output().unwrap();
                panic!(
                    "{step}: bakery exited ({status}) before pausing:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{step}: never paused"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let crashed_build = std::fs::read_to_string(&marker).unwrap();
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();

        let mut restart = command(false);
        let second = tokio::task::spawn_blocking(move || restart.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&second.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
        assert!(second.status.success(), "{step}: restart failed:\n{stderr}");
        assert_eq!(
            stdout.contains("(resumed)"),
            resumes,
            "{step}:\n{stdout}\n{stderr}"
        );

        let store = SqlStore::connect(&db).await.unwrap();
        let crashed = store.get_build(&crashed_build).await.unwrap().unwrap();
        let expected = if resumes {
            BuildState::Succeeded
        } else {
            BuildState::CleanedUp
        };
        assert_eq!(crashed.state, expected, "{step}");
        let builds = store
            .list_builds(&BuildFilter {
                version: Some(version.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        let targets = plan_targets(&p);
        for b in &builds {
            let left = leftovers(&w, &targets, &b.build_id, true).await;
            assert!(
                left.is_empty(),
                "{step}: build {} left {left:#?}",
                b.build_id
            );
        }
        for t in &targets {
            no_builder_resources(&w, t).await;
        }
        for c in &p.distribute.copies {
            let t = target(
                c.account
                    .as_ref()
                    .map(|a| a.account_id.as_str())
                    .unwrap_or(HOME),
                &c.region,
            );
            let images = images_named(&w, &t, &p.image.name).await;
            assert_eq!(images.len(), 1, "{step}: one image in {t}");
            let tags = tag_map(images[0].tags());
            assert!(tags.contains_key("bakery:released"), "{step}: {tags:?}");
        }
    }
}

/// A replica dies half-way through `distribute`: its process is gone, its build record
/// still says `running`. Its journal names this very process (in a container the server is
/// PID 1 after every restart), or a process on another host. The build's heartbeat has
/// stopped, so the retried job resumes it: the copies made before the crash are adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_whose_heartbeat_stopped_is_resumed_whatever_its_owner_says() {
    let w = world().await;
    for case in ["this-process", "another-host"] {
        let (store, dir) = temp_store().await;
        let version = format!("crashed-{case}");
        let mut p = plan(&version, copies(&["us-east-1", "eu-west-1"], &[None]));
        p.distribute.deprecate_after_secs = None;
        let crashed_id = crash_at(&w, &store, dir.path(), &p, "distribute").await;
        if case == "another-host" {
            store
                .append_journal(
                    &crashed_id,
                    &JournalEntry {
                        kind: "owner".into(),
                        data: serde_json::json!({"pid": 1, "host": "replica-b"}),
                    },
                )
                .await
                .unwrap();
        }

        // The job is retried in this process.
        let (second, sink) = runner(&w, &store, liveness_options()).await;
        let outcome = second
            .run(p.clone())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:#}\n{}", sink.text()));
        match &outcome {
            BuildOutcome::Built {
                build_id, resumed, ..
            } => assert_eq!((build_id.as_str(), *resumed), (crashed_id.as_str(), true)),
            other => panic!("{case}: {other:?}"),
        }
        let record = store.get_build(&crashed_id).await.unwrap().unwrap();
        assert_eq!(record.state, BuildState::Succeeded, "{case}");
        for t in plan_targets(&p) {
            no_builder_resources(&w, &t).await;
            if t.region != "us-east-1" || p.distribute.copies.iter().any(|c| c.region == t.region) {
                assert_eq!(
                    images_named(&w, &t, &p.image.name).await.len(),
                    1,
                    "{case}: one image in {t}"
                );
            }
        }
    }
}

/// Runs `plan` in this process until it reaches `step`, then drops it there as a crash
/// would: nothing of it runs any more, nothing is cleaned up. Returns its build id.
async fn crash_at(
    w: &World,
    store: &DynStore,
    dir: &std::path::Path,
    plan: &BuildPlan,
    step: &str,
) -> String {
    let marker = dir.join(format!("paused-{}", plan.version));
    let (first, _) = runner(
        w,
        store,
        BuildOptions {
            pause: Some(PauseAt {
                step: step.into(),
                marker: marker.clone(),
            }),
            ..liveness_options()
        },
    )
    .await;
    let first_plan = plan.clone();
    let crashed = tokio::spawn(async move { first.run(first_plan).await });
    let started = Instant::now();
    while !marker.exists() {
        assert!(!crashed.is_finished(), "the build ended before {step}");
        assert!(started.elapsed() < Duration::from_secs(120), "never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crashed.abort();
    let _ = crashed.await;
    std::fs::read_to_string(&marker).unwrap()
}

/// Two bakery installations share one AWS account (a staging and a production bot, or
/// two teams). The other installation ("green") crashed an hour ago: its builder, key
/// pair and security group are left, its builds unknown to this store. This
/// installation's janitor, with a TTL those leftovers are past, deletes its own
/// leftover and never touches (nor even reports) green's, nor a resource that carries
/// no installation marker at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_never_touches_another_installations_resources() {
    use bakery::aws::janitor::{self, JanitorOptions, Verdict};
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let ours = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "our-crashed-build"),
            ("bakery:created-at", &old),
            ("bakery:role", "builder"),
            ("bakery:installation", OURS),
        ],
    )
    .await;
    let green = [
        ("bakery:build-id", "green-build"),
        ("bakery:created-at", old.as_str()),
        ("bakery:role", "builder"),
        ("bakery:installation", "green"),
    ];
    let theirs = run_instance(&w, &t, &green).await;
    let unmarked = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "unmarked-build"),
            ("bakery:created-at", &old),
            ("bakery:role", "builder"),
        ],
    )
    .await;
    let ec2 = w.check.ec2(&t).unwrap();
    let green_tags: Vec<Tag> = green
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect();
    ec2.create_key_pair()
        .key_name("bakery-green-build")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::KeyPair)
                .set_tags(Some(green_tags.clone()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = ec2
        .describe_vpcs()
        .send()
        .await
        .unwrap()
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .unwrap()
        .to_string();
    let green_group = ec2
        .create_security_group()
        .group_name("bakery-green-build")
        .description("green's builder")
        .vpc_id(vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .set_tags(Some(green_tags))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();

    let report = janitor::run(
        &w.check,
        store.as_ref(),
        std::slice::from_ref(&t),
        &JanitorOptions {
            ttl: Duration::from_secs(6 * 3600),
            dry_run: false,
            now: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
    let seen: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
    for other in [
        theirs.as_str(),
        "bakery-green-build",
        green_group.as_str(),
        unmarked.as_str(),
    ] {
        assert!(
            !seen.contains(&other),
            "the janitor looked at {other}, which is not this installation's: {:#?}",
            report.findings
        );
    }
    let own = report.findings.iter().find(|f| f.id == ours).unwrap();
    assert!(matches!(own.verdict, Verdict::Delete(_)), "{own:?}");
    assert!(!instance_alive(&w, &t, &ours).await, "our leftover goes");
    assert!(
        instance_alive(&w, &t, &theirs).await,
        "green's builder stays"
    );
    assert!(instance_alive(&w, &t, &unmarked).await);
    let keys = ec2
        .describe_key_pairs()
        .key_names("bakery-green-build")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.key_pairs().len(), 1, "green's key pair stays");
    let groups = ec2
        .describe_security_groups()
        .group_ids(&green_group)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.security_groups().len(), 1, "green's group stays");
}

/// A replica died an hour ago with every copy made, and no job took its build over. Its
/// builder went when the intermediate was available; the janitor deletes what the build
/// had left but its final copies: the builder's key pair and security group, and the
/// unencrypted intermediate image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_cleans_up_after_a_build_whose_heartbeat_stopped() {
    use bakery::aws::janitor::{self, JanitorOptions, Verdict};
    let w = world().await;
    let (store, dir) = temp_store().await;
    let mut p = plan(
        "release-4.1.0",
        copies(&["us-east-1", "eu-west-1"], &[None]),
    );
    p.distribute.deprecate_after_secs = None;
    let crashed_id = crash_at(&w, &store, dir.path(), &p, "distribute:copied").await;
    // Its last heartbeat was an hour ago.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("bakery.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE builds SET heartbeat_at = heartbeat_at - 3600000 WHERE build_id = ?")
            .bind(&crashed_id)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let t = target(HOME, "us-east-1");
    let before = leftovers(&w, std::slice::from_ref(&t), &crashed_id, true).await;
    assert!(
        before
            .iter()
            .any(|r| r.resource.kind == ResourceKind::SecurityGroup),
        "the crash left its builder's security group: {before:#?}"
    );
    assert!(
        !before
            .iter()
            .any(|r| r.resource.kind == ResourceKind::Instance),
        "the builder outlived the intermediate: {before:#?}"
    );

    let report = janitor::run(
        &w.check,
        store.as_ref(),
        &plan_targets(&p),
        &JanitorOptions {
            ttl: Duration::ZERO,
            dry_run: false,
            now: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
    let builder_parts = report.findings.iter().filter(|f| {
        f.build_id == crashed_id
            && matches!(
                f.kind,
                ResourceKind::Instance | ResourceKind::KeyPair | ResourceKind::SecurityGroup
            )
    });
    assert_eq!(builder_parts.clone().count(), 2, "{:#?}", report.findings);
    for f in builder_parts {
        assert!(matches!(f.verdict, Verdict::Delete(_)), "{f:?}");
    }
    for t in plan_targets(&p) {
        no_builder_resources(&w, &t).await;
        assert_eq!(
            images_named(&w, &t, &p.image.name).await.len(),
            1,
            "the final copy in {t} stays"
        );
    }
}

/// A build runner on the proxy, with a memory log.
async fn runner(
    w: &World,
    store: &DynStore,
    options: BuildOptions,
) -> (BuildRunner, Arc<MemorySink>) {
    let session = Arc::new(
        AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
            .await
            .unwrap(),
    );
    let sink = Arc::new(MemorySink::default());
    let log = BuildLog::new(Redactor::new(), vec![sink.clone()]);
    let provisioner: Arc<dyn Provisioner> = Arc::new(RecordingProvisioner::default());
    (
        BuildRunner::new(session, store.clone(), provisioner, log, options),
        sink,
    )
}

/// Build options whose heartbeat goes stale within seconds, not a minute.
fn liveness_options() -> BuildOptions {
    BuildOptions {
        liveness: Liveness {
            every: Duration::from_millis(300),
            stale_after: Duration::from_secs(2),
        },
        ..BuildOptions::default()
    }
}

const BENCH_REGIONS: [&str; 16] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ca-central-1",
    "sa-east-1",
];

/// The benchmark behind `bench/aws-parallel/run.sh`: the same recipe built to 1 region
/// and to 16 regions through a proxy that adds latency to every EC2 call. Prints the
/// ratio of the two build times and the EC2 calls per build; asserts nothing about time.
/// The warm-up builds are judged by the IAM oracle; the measured ones are only recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/aws-parallel/run.sh"]
async fn bench_parallel_copies() {
    let latency_ms: u64 = std::env::var("BAKERY_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rounds: usize = std::env::var("BAKERY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let proxy = AwsProxy::start(moto.port).await;
    let check = AwsSession::connect(settings(&moto.endpoint), "us-east-1")
        .await
        .unwrap();
    for region in BENCH_REGIONS {
        let kms = check.kms(&target(HOME, region)).unwrap();
        let key = kms.create_key().send().await.unwrap();
        kms.create_alias()
            .alias_name("alias/ami")
            .target_key_id(key.key_metadata().unwrap().key_id())
            .send()
            .await
            .unwrap();
    }
    let w = World {
        moto,
        proxy,
        check,
        keys: BTreeMap::new(),
    };
    let (store, _dir) = temp_store().await;
    w.proxy.set_ec2_latency(Duration::from_millis(latency_ms));

    let mut times: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    // Per region count: every AWS call of one build, by service and action.
    let mut calls: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
    for round in 0..=rounds {
        for n in [1usize, 16] {
            let version = format!("bench-{round}-{n}");
            let p = plan(&version, copies(&BENCH_REGIONS[..n], &[None]));
            w.proxy.clear();
            let started = Instant::now();
            let (result, log) =
                build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
            let elapsed = started.elapsed().as_secs_f64();
            result.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()));
            let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
            for r in w.proxy.requests() {
                *by_action
                    .entry(format!("{}:{}", r.service, r.action))
                    .or_default() += 1;
            }
            if round == 0 {
                // The warm-up builds are judged against deploy/aws/ here; the measured
                // builds make the same calls and are only recorded (see below).
                iam_oracle::assert_allows_all(
                    &w.proxy.requests(),
                    &iam_oracle::Policies::deployed(),
                );
                continue;
            }
            if round == 1 && std::env::var_os("BENCH_TIMELINE").is_some() {
                print_timeline(n, &w.proxy.requests());
            }
            times.entry(n).or_default().push(elapsed);
            calls.insert(n, by_action);
        }
        // After the warm-up, the proxy stops reading from moto what the IAM oracle would
        // need (a lookup before each call that names a resource): those lookups go
        // through moto's one process and would slow the 16-region build, whose calls
        // run in parallel, more than the 1-region build.
        if round == 0 {
            w.proxy.stop_judging();
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let t1 = median(&times[&1]);
    let t16 = median(&times[&16]);
    let total = |n: usize| calls[&n].values().sum::<usize>();
    let ec2 = |n: usize| {
        calls[&n]
            .iter()
            .filter(|(a, _)| a.starts_with("ec2:"))
            .map(|(_, c)| c)
            .sum::<usize>()
    };
    println!("latency per EC2 call: {latency_ms} ms, rounds: {rounds}");
    println!(
        "build to  1 region : {t1:.2} s (median), {} AWS calls ({} EC2)",
        total(1),
        ec2(1)
    );
    println!(
        "build to 16 regions: {t16:.2} s (median), {} AWS calls ({} EC2)",
        total(16),
        ec2(16)
    );
    println!("time(16)/time(1) = {:.2} (goal <= 1.3)", t16 / t1);
    println!("calls per build by action:  1 region  16 regions");
    let actions: BTreeSet<&String> = calls.values().flat_map(|m| m.keys()).collect();
    for a in actions {
        let of = |n: usize| calls[&n].get(a).copied().unwrap_or(0);
        println!("calls {a:<36} {:>4} {:>11}", of(1), of(16));
    }
}

/// One build's calls in the order they reached the proxy, each with the milliseconds from
/// the first call to its arrival and to its answer (`BENCH_TIMELINE=1`): where the calls
/// of several regions wait for each other.
fn print_timeline(regions: usize, calls: &[Recorded]) {
    let Some(t0) = calls.iter().filter_map(|r| r.arrived).min() else {
        return;
    };
    let ms = |t: Option<Instant>| t.map_or(0.0, |t| (t - t0).as_secs_f64() * 1000.0);
    let mut calls: Vec<&Recorded> = calls.iter().collect();
    calls.sort_by_key(|r| r.arrived);
    for r in calls {
        println!(
            "timeline {regions:>2} regions {:>6.0} {:>6.0} ms  {:<15} {}",
            ms(r.arrived),
            ms(r.answered),
            r.region,
            r.action
        );
    }
}

/// Upper bound on AWS calls (EC2, STS, KMS and SSM, pre-flight included) for one recipe
/// built and copied, encrypted, to three regions of the home account. A regression guard: a
/// change that asks AWS again what an earlier answer already said fails here. With moto
/// every wait answers at its first poll; a real build polls more, the same waits. 38 today:
///
/// - pre-flight, 8: GetCallerIdentity; one DescribeImages by name per target (3), which
///   answers both "already released?" and "is the name free?", and in the builder region
///   also finds the source (its filter asked in the same call); DescribeSubnets;
///   DescribeKey per target (3). The copies stay in the home
///   account, so the builder's volume is encrypted under the us-east-1 copy's key and the
///   region's EBS encryption by default is not read;
/// - the builder, 7: ImportKeyPair, CreateSecurityGroup, AuthorizeSecurityGroupIngress,
///   RunInstances, DescribeInstances (running), GetConsoleOutput (host key fingerprints),
///   TerminateInstances (as soon as the intermediate is available, not waited on);
/// - the intermediate, 2: CreateImage (which shuts the builder down itself before the
///   snapshots: no StopInstances, no wait for `stopped`; image and snapshots tagged),
///   DescribeImages (available);
/// - the copies, 7: CopyImage (tagged at creation) and DescribeImages (available) per
///   target (6), DeregisterImage of the intermediate with the snapshots its wait named;
/// - publish and release, 12: ModifyImageAttribute, EnableImageDeprecation, PutParameter
///   (the version parameter) and CreateTags (`bakery:released`) per target;
/// - cleanup, 2: DeleteSecurityGroup, DeleteKeyPair.
const CALLS_FOR_THREE_REGIONS: usize = 38;

/// The AWS calls of one build to three regions, counted by action at the recording proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_to_three_regions_stays_within_its_aws_call_budget() {
    let w = world().await;
    let (store, _dir) = temp_store().await;
    let p = plan("calls-1.0.0", copies(&REGIONS, &[None]));
    w.proxy.clear();
    let (result, log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()));
    let requests = w.proxy.requests();
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *by_action
            .entry(format!("{}:{}", r.service, r.action))
            .or_default() += 1;
    }
    let listing: String = by_action
        .iter()
        .map(|(a, n)| format!("{n:4} {a}\n"))
        .collect();
    println!(
        "AWS calls for 1 recipe -> 3 regions: {}\n{listing}",
        requests.len()
    );
    if std::env::var("BAKERY_CALLS_DETAIL").is_ok() {
        for r in &requests {
            println!("{} {} {} {:?}", r.seq, r.region, r.action, r.params);
        }
    }
    assert!(
        requests.len() <= CALLS_FOR_THREE_REGIONS,
        "{} AWS calls, budget {CALLS_FOR_THREE_REGIONS}:\n{listing}",
        requests.len()
    );
    // Without StopInstances, the image is consistent only because CreateImage shuts the
    // builder down first: `NoReboot` is sent, false.
    let create = w.proxy.calls("CreateImage");
    assert_eq!(create.len(), 1, "{listing}");
    assert_eq!(
        create[0].param("NoReboot"),
        Some("false"),
        "CreateImage must shut the builder down before its snapshots: {:?}",
        create[0].params
    );
}

/// SIGTERM while copies exist: the build deletes everything it made, copies in every
/// account and region included, and records itself cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_and_cleans_up() {
    let w = world().await;
    let dir = tempfile::Builder::new()
        .prefix("bakery-term-")
        .tempdir()
        .unwrap();
    let db = format!("sqlite://{}", dir.path().join("bakery.db").display());
    let mut p = plan(
        "release-5.0.0",
        copies(&["us-east-1", "eu-west-1"], &[None, Some(other_account())]),
    );
    p.distribute.deprecate_after_secs = None;
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, serde_json::to_string(&p).unwrap()).unwrap();
    let marker = dir.path().join("paused");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(["build", "--plan-file"])
        .arg(&plan_file)
        .args([
            "--state-db",
            &db,
            "--endpoint-url",
            &w.moto.endpoint,
            "--provisioner",
            "none",
        ])
        .arg("--repo")
        .arg(dir.path())
        .envs(moto_credentials_env(dir.path()))
        .envs(operator_policy_env())
        .env("BAKERY_TEST_PAUSE_AT", "distribute:copied")
        .env("BAKERY_TEST_PAUSE_FILE", &marker)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "bakery exited before pausing"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let build_id = std::fs::read_to_string(&marker).unwrap();
    // Every copy exists now.
    for c in &p.distribute.copies {
        let t = target(
            c.account
                .as_ref()
                .map(|a| a.account_id.as_str())
                .unwrap_or(HOME),
            &c.region,
        );
        assert_eq!(images_named(&w, &t, &p.image.name).await.len(), 1);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cancelled"), "{stderr}");
    let store = SqlStore::connect(&db).await.unwrap();
    assert_eq!(
        store.get_build(&build_id).await.unwrap().unwrap().state,
        BuildState::Cancelled
    );
    let targets = plan_targets(&p);
    let left = leftovers(&w, &targets, &build_id, false).await;
    assert!(left.is_empty(), "left behind: {left:#?}\n{stderr}");
    for t in &targets {
        assert!(
            images_named(&w, t, &p.image.name).await.is_empty(),
            "copy left in {t}"
        );
        no_builder_resources(&w, t).await;
    }
}

/// `bakery janitor` from the command line: dry run, then a real run; an untagged
/// instance is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_command_line() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let proxy = AwsProxy::start(moto.port).await;
    let check = AwsSession::connect(settings(&moto.endpoint), "eu-west-1")
        .await
        .unwrap();
    let w = World {
        moto,
        proxy,
        check,
        keys: BTreeMap::new(),
    };
    let t = target(HOME, "eu-west-1");
    let old = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let leftover = run_instance(
        &w,
        &t,
        &[
            ("bakery:build-id", "gone-build"),
            ("bakery:created-at", &old),
            ("bakery:installation", OURS),
        ],
    )
    .await;
    let untagged = run_instance(&w, &t, &[]).await;
    let dir = tempfile::Builder::new()
        .prefix("bakery-janitor-")
        .tempdir()
        .unwrap();
    let db = format!("sqlite://{}", dir.path().join("bakery.db").display());
    let janitor = |dry_run: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bakery"));
        c.args([
            "janitor",
            "--region",
            "eu-west-1",
            "--ttl",
            "6h",
            "--state-db",
            &db,
        ])
        .args(["--endpoint-url", &w.moto.endpoint])
        .envs(moto_credentials_env(dir.path()));
        if dry_run {
            c.arg("--dry-run");
        }
        c
    };
    let mut dry = janitor(true);
    let out = tokio::task::spawn_blocking(move || dry.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("would delete instance") && stdout.contains(&leftover),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 resource(s) would be deleted (dry run)"),
        "{stdout}"
    );
    assert!(!stdout.contains(&untagged), "{stdout}");
    assert!(instance_alive(&w, &t, &leftover).await);

    let mut real = janitor(false);
    let out = tokio::task::spawn_blocking(move || real.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 resource(s) deleted"), "{stdout}");
    assert!(!instance_alive(&w, &t, &leftover).await);
    assert!(instance_alive(&w, &t, &untagged).await);
}

/// EC2 throttles (`RequestLimitExceeded`): the calls are retried with backoff and the
/// build goes on, with nothing lost and nothing left.
#[tokio::test]
async fn throttled_calls_are_retried_and_the_build_completes() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-throttled",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    w.proxy
        .fail("RunInstances", "RequestLimitExceeded", 2, |_| true);
    w.proxy
        .fail("CopyImage", "RequestLimitExceeded", 2, |_| true);
    w.proxy
        .fail("DescribeImages", "RequestLimitExceeded", 2, |_| true);
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, log) = build(&w, &store, plan.clone(), provisioner).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let BuildOutcome::Built { manifest, .. } = outcome else {
        panic!("expected a build, got {outcome:?}");
    };
    assert_eq!(manifest.builds[0].copies.len(), 4);
    // Two throttled answers, then the call that went through: one builder only.
    let runs = w.proxy.calls("RunInstances");
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!(runs.iter().filter(|r| r.status == 200).count(), 1);
    let copies = w.proxy.calls("CopyImage");
    assert_eq!(copies.iter().filter(|r| r.status == 200).count(), 4);
    assert_eq!(copies.len(), 6, "two throttled copies were retried");
    for t in plan_targets(&plan) {
        no_builder_resources(&w, &t).await;
    }
}

/// What bakery sent at d3dd4aa and the policies `deploy/aws/` held then, kept in
/// `tests/fixtures/iam-d3dd4aa/`.
fn d3dd4aa() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iam-d3dd4aa")
}

fn recording(name: &str) -> Vec<Recorded> {
    let path = d3dd4aa().join(format!("{name}.recording.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// (account, call, evaluated action, resource type) of each denial.
fn denied(verdict: &iam_oracle::Verdict) -> Vec<(String, String, String, String)> {
    verdict
        .denials
        .iter()
        .map(|d| {
            (
                d.account.clone(),
                d.call.clone(),
                d.action.clone(),
                d.resource_type.clone(),
            )
        })
        .collect()
}

fn count(denials: &[(String, String, String, String)], want: (&str, &str, &str, &str)) -> usize {
    denials
        .iter()
        .filter(|(a, c, x, t)| (a.as_str(), c.as_str(), x.as_str(), t.as_str()) == want)
        .count()
}

/// The oracle, run on a release and a failed build as bakery made them at d3dd4aa and
/// judged by the policies of that time, finds what the fidelity review inferred from
/// AWS's documentation: CreateImage cannot create the snapshots (no request tag, and a
/// resource tag cannot exist yet), nor can CopyImage in the home account; CreateSecurityGroup
/// is denied on the vpc; the target-account role cannot run cleanup's Describe calls;
/// GetConsoleOutput is denied. Today's policies allow the vpc and the Describe calls, and
/// still deny the old untagged snapshots: the code had to change with them.
#[test]
fn the_iam_oracle_finds_the_denials_of_the_d3dd4aa_policies() {
    let old = iam_oracle::Policies::from_dir(d3dd4aa());
    let release = recording("full-build");
    let failed = recording("failed-build");

    let v = denied(&iam_oracle::evaluate(&release, &old));
    let creates = (
        "123456789012",
        "ec2:CreateImage",
        "ec2:CreateImage",
        "snapshot",
    );
    assert_eq!(count(&v, creates), 1, "{v:#?}");
    let copies = ("123456789012", "ec2:CopyImage", "ec2:CopyImage", "snapshot");
    assert_eq!(count(&v, copies), 3, "one per home region: {v:#?}");
    let vpc = (
        "123456789012",
        "ec2:CreateSecurityGroup",
        "ec2:CreateSecurityGroup",
        "vpc",
    );
    assert_eq!(count(&v, vpc), 1, "{v:#?}");
    let console = (
        "123456789012",
        "ec2:GetConsoleOutput",
        "ec2:GetConsoleOutput",
        "instance",
    );
    assert_eq!(count(&v, console), 1, "{v:#?}");
    assert!(
        !v.iter().any(|(a, ..)| a == OTHER),
        "CopyImage was unconditional in the target role: {v:#?}"
    );

    let f = denied(&iam_oracle::evaluate(&failed, &old));
    for action in [
        "ec2:DescribeInstances",
        "ec2:DescribeKeyPairs",
        "ec2:DescribeSecurityGroups",
    ] {
        assert_eq!(
            count(&f, (OTHER, action, action, "*")),
            3,
            "{action} in each of the target account's regions: {f:#?}"
        );
    }

    let today = iam_oracle::Policies::deployed();
    let v = denied(&iam_oracle::evaluate(&release, &today));
    assert_eq!(count(&v, vpc), 0, "{v:#?}");
    // (GetConsoleOutput is not judged again here: this recording was taken before the
    // proxy read the instance's tags for it, so the instance looks untagged.)
    assert_eq!(
        count(&v, creates),
        1,
        "untagged snapshots stay denied: {v:#?}"
    );
    assert_eq!(count(&v, copies), 3, "{v:#?}");
    let f = denied(&iam_oracle::evaluate(&failed, &today));
    assert!(f.is_empty(), "{f:#?}");

    // The trust policy of that time trusted a role named `bakery` that the README never
    // asked for, and an external ID nobody could configure: every AssumeRole is denied.
    // Today's trusts the home account with the operator's external ID.
    let assume = ("123456789012", "sts:AssumeRole", "sts:AssumeRole", "role");
    let assumed = failed.iter().filter(|c| c.action == "AssumeRole").count();
    assert!(assumed > 0);
    let f = denied(&iam_oracle::evaluate(&failed, &old));
    assert_eq!(count(&f, assume), assumed, "{f:#?}");
    let f = denied(&iam_oracle::evaluate(&failed, &today));
    assert_eq!(count(&f, assume), 0, "{f:#?}");
}

/// Someone holding the builder's credentials tags an instance bakery never made with
/// `bakery:build-id`, so that bakery's cleanup or janitor would delete it. Today's
/// policies deny that CreateTags (it is neither part of a creating call nor on a bakery
/// resource); re-tagging bakery's own resource stays allowed. The d3dd4aa policies
/// allowed both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forging_a_build_id_tag_is_denied() {
    let w = world().await;
    w.proxy.judge_by_hand();
    let t = target(HOME, "us-east-1");
    let theirs = run_instance(&w, &t, &[("team", "data")]).await;
    let ours = run_instance(&w, &t, &[(bakery::plan::model::tag_keys::BUILD_ID, "b-1")]).await;
    let session = AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
        .await
        .unwrap();
    let ec2 = session.ec2(&t).unwrap();
    for id in [&theirs, &ours] {
        ec2.create_tags()
            .resources(id.as_str())
            .tags(
                Tag::builder()
                    .key(bakery::plan::model::tag_keys::BUILD_ID)
                    .value("b-forged")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let calls = w.proxy.calls("CreateTags");
    assert_eq!(calls.len(), 2);

    let today = iam_oracle::evaluate(&calls, &iam_oracle::Policies::deployed());
    assert_eq!(today.evaluated, 2);
    let denied: Vec<&str> = today.denials.iter().map(|d| d.resource.as_str()).collect();
    assert_eq!(
        denied,
        vec![format!("arn:aws:ec2:us-east-1:{HOME}:instance/{theirs}")],
        "{today:#?}"
    );
    let old = iam_oracle::evaluate(&calls, &iam_oracle::Policies::from_dir(d3dd4aa()));
    assert!(old.denials.is_empty(), "{old:#?}");
}

/// EC2 answers `InvalidSnapshot.InUse` to a DeleteSnapshot sent right after the image's
/// DeregisterImage. Removing the intermediate must not turn that into a lost release:
/// bakery deregisters it with `DeleteAssociatedSnapshots`, and any snapshot it still
/// deletes on its own waits the InUse out. Every copy is kept, nothing else is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_still_in_use_after_deregistration_does_not_lose_the_release() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-in-use",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    w.proxy
        .fail("DeleteSnapshot", "InvalidSnapshot.InUse", 2, |_| true);
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, log) = build(&w, &store, plan.clone(), provisioner).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let BuildOutcome::Built {
        build_id, manifest, ..
    } = outcome
    else {
        panic!("expected a build, got {outcome:?}");
    };
    assert_eq!(manifest.builds[0].copies.len(), 4);
    let dereg = w.proxy.calls("DeregisterImage");
    assert_eq!(dereg.len(), 1, "only the intermediate goes: {dereg:#?}");
    assert_eq!(dereg[0].param("DeleteAssociatedSnapshots"), Some("true"));
    assert!(
        w.proxy.calls("DeleteSnapshot").is_empty(),
        "EC2 deleted the snapshots with the image"
    );
    let left = leftovers(&w, &plan_targets(&plan), &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}");
    for t in plan_targets(&plan) {
        let finals = images_named(&w, &t, &plan.image.name).await;
        let wanted = usize::from(t.region != REGIONS[2]);
        assert_eq!(finals.len(), wanted, "{t}");
    }

    // A snapshot deleted on its own (cleanup, the janitor) waits out InvalidSnapshot.InUse.
    let t = target(HOME, "us-east-1");
    let ec2 = w.check.ec2(&t).unwrap();
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .unwrap();
    let snap = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().unwrap())
        .tag_specifications(tags::spec(
            ResourceType::Snapshot,
            &BTreeMap::from([(
                bakery::plan::model::tag_keys::BUILD_ID.to_string(),
                build_id.clone(),
            )]),
        ))
        .send()
        .await
        .unwrap();
    let snap_id = snap.snapshot_id().unwrap().to_string();
    w.proxy.clear_failures();
    w.proxy
        .fail("DeleteSnapshot", "InvalidSnapshot.InUse", 2, |_| true);
    let session = AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
        .await
        .unwrap();
    let res = bakery::aws::ResourceRef::new(ResourceKind::Snapshot, &snap_id, &t);
    bakery::aws::resource::delete(&session, &res)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let tries = w.proxy.calls("DeleteSnapshot");
    assert_eq!(
        tries
            .iter()
            .filter(|c| c.param("SnapshotId") == Some(&snap_id))
            .count(),
        3
    );
}

/// EC2 is eventually consistent: a resource just created can be NotFound for a moment
/// to the next call that names it. A release survives a second of that on every
/// instance, image, security group and key pair it creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_survives_resources_unseen_right_after_creation() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-unseen",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    w.proxy.unseen_after_create(Duration::from_secs(1));
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, log) = build(&w, &store, plan.clone(), provisioner).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let BuildOutcome::Built {
        build_id, manifest, ..
    } = outcome
    else {
        panic!("expected a build, got {outcome:?}");
    };
    assert_eq!(manifest.builds[0].copies.len(), 4);
    let unseen = w
        .proxy
        .requests()
        .into_iter()
        .filter(|c| c.response.contains(".NotFound</Code>"))
        .count();
    assert!(unseen > 0, "the proxy hid nothing");
    let left = leftovers(&w, &plan_targets(&plan), &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// A copy EC2 gives up on ends `failed` with a StateReason (a disabled KMS key in the
/// target account, say), or `invalid`. Neither ever becomes `available`: the wait stops
/// at the first answer (a KMS code into another account after the bounded re-issues of
/// `aws::copy_retry`), names EC2's code and message, and cleanup leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_or_turns_invalid_stops_the_wait_with_the_reason() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let in_other_eu = |r: &Recorded| {
        r.region == "eu-west-1"
            && r.access_key.starts_with("ASIA")
            && r.param("ImageId.1").is_some()
    };
    for (version, state, reason) in [
        (
            "release-failed",
            "failed",
            "<stateReason><code>Client.InvalidKMSKey.InvalidState</code><message>The KMS key provided is in an incorrect state</message></stateReason>",
        ),
        ("release-invalid", "invalid", ""),
    ] {
        w.proxy.rewrite("DescribeImages", usize::MAX, in_other_eu, move |body| {
            *body = body.replace(
                "<imageState>available</imageState>",
                &format!("<imageState>{state}</imageState>{reason}"),
            );
        });
        let plan = plan(version, copies(&REGIONS[..2], &[None, Some(other_account())]));
        let provisioner = Arc::new(RecordingProvisioner::default());
        let started = Instant::now();
        let (outcome, log) = tokio::time::timeout(
            Duration::from_secs(120),
            build(&w, &store, plan.clone(), provisioner),
        )
        .await
        .unwrap_or_else(|_| panic!("the {state} copy was waited on past 120 s"));
        let err = format!("{:#}", outcome.expect_err("the build must fail"));
        assert!(err.contains(&format!("is {state}")), "{err}\n{}", log.text());
        if state == "failed" {
            assert!(
                err.contains("Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"),
                "{err}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(120));
        let build_id = store
            .list_builds(&BuildFilter::default())
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.version == version)
            .unwrap()
            .build_id;
        let left = leftovers(&w, &plan_targets(&plan), &build_id, false).await;
        assert!(left.is_empty(), "{left:#?}");
        w.proxy.clear_rewrites();
    }
}

/// cloud-init prints the builder's host key fingerprints 30–90 s after `running`, so the
/// first console reads are empty. bakery reads the latest console (`Latest=true`) until
/// the block appears and pins the host key to it, instead of trusting the first key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_pinned_once_the_console_shows_them() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let pins = [
        "SHA256:3f0bQkYVmKXk8bHc2lXq0sC1nZgD0pQk9Yh1eKq7b8s",
        "SHA256:Jm2x1r1vY3GkQ0p8n3sT6a0Qe7cQm5mV0dQh2mJ8kA0",
    ];
    w.proxy
        .rewrite("GetConsoleOutput", 2, |_| true, console_output(""));
    let block = format!(
        "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
         ec2: 256 {} root@ip-10-0-0-5 (ECDSA)\n\
         ec2: 256 {} root@ip-10-0-0-5 (ED25519)\n\
         ec2: -----END SSH HOST KEY FINGERPRINTS-----\n",
        pins[0], pins[1]
    );
    w.proxy
        .rewrite("GetConsoleOutput", 1, |_| true, console_output(&block));
    let plan = plan("release-pinned", copies(&REGIONS[..1], &[None]));
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, log) = build(&w, &store, plan, provisioner).await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let reads = w.proxy.calls("GetConsoleOutput");
    assert_eq!(reads.len(), 3, "{reads:#?}");
    assert!(reads.iter().all(|r| r.param("Latest") == Some("true")));
    let text = log.text();
    assert!(
        text.contains(&format!(
            "pinning the host key to the console's fingerprints: {}, {}",
            pins[0], pins[1]
        )),
        "{text}"
    );
}

/// EBS encryption by default, under the AWS managed key `aws/ebs`, would encrypt the
/// intermediate with a key no other account can be given. The build stops in pre-flight,
/// naming the key, the account and the fix, before any instance is launched. A plan that
/// stays in the home account is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_managed_default_ebs_key_fails_preflight_for_other_accounts() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let ns = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
    w.proxy.answer(
        "GetEbsEncryptionByDefault",
        &format!("<GetEbsEncryptionByDefaultResponse {ns}><requestId>proxy</requestId><ebsEncryptionByDefault>true</ebsEncryptionByDefault><sseType>sse-ebs</sseType></GetEbsEncryptionByDefaultResponse>"),
    );
    w.proxy.answer(
        "GetEbsDefaultKmsKeyId",
        &format!("<GetEbsDefaultKmsKeyIdResponse {ns}><requestId>proxy</requestId><kmsKeyId>arn:aws:kms:us-east-1:{HOME}:alias/aws/ebs</kmsKeyId></GetEbsDefaultKmsKeyIdResponse>"),
    );
    let shared = plan(
        "release-ebs-default",
        copies(&REGIONS[..1], &[None, Some(other_account())]),
    );
    let provisioner = Arc::new(RecordingProvisioner::default());
    let (outcome, _log) = build(&w, &store, shared, provisioner.clone()).await;
    let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
    assert!(err.contains("pre-flight"), "{err}");
    assert!(err.contains("aws/ebs"), "{err}");
    assert!(err.contains(OTHER), "{err}");
    assert!(err.contains("modify-ebs-default-kms-key-id"), "{err}");
    assert!(err.contains("Set builder.kms_key in the recipe"), "{err}");
    assert!(w.proxy.calls("RunInstances").is_empty());

    let home_only = plan("release-ebs-home", copies(&REGIONS[..1], &[None]));
    let (outcome, log) = build(&w, &store, home_only, provisioner).await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
}

/// A source image whose snapshots are encrypted makes an intermediate under the same key.
/// Under a key bakery may not use (AWS answers DescribeKey with AccessDenied: the builder
/// policy allows keys aliased alias/ami*), nothing could be shared with the other
/// account: pre-flight fails naming the source, the key and the fix, before any launch.
/// Under the `alias/ami` customer managed key, the build goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_source_under_an_unusable_key_fails_preflight() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let other_key = w
        .check
        .kms(&t)
        .unwrap()
        .create_key()
        .description("not for bakery")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let ami_key = w.keys[&t].clone();
    for (version, key, usable) in [
        ("release-enc-other", other_key.clone(), false),
        ("release-enc-ami", ami_key, true),
    ] {
        let k = key.clone();
        w.proxy.rewrite(
            "DescribeImages",
            1,
            |r| r.param("Owner.1") == Some("amazon"),
            move |body| {
                let enc = format!("<encrypted>true</encrypted><kmsKeyId>{k}</kmsKeyId>");
                *body = body
                    .replace("<encrypted>false</encrypted>", "")
                    .replace("<ebs>", &format!("<ebs>{enc}"));
            },
        );
        let k = key.clone();
        w.proxy.fail(
            "DescribeKey",
            "AccessDeniedException",
            if usable { 0 } else { 1 },
            move |r| r.param("KeyId") == Some(k.as_str()),
        );
        let plan = plan(
            version,
            copies(&REGIONS[..1], &[None, Some(other_account())]),
        );
        let provisioner = Arc::new(RecordingProvisioner::default());
        let (outcome, log) = build(&w, &store, plan, provisioner).await;
        if usable {
            outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
        } else {
            let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
            assert!(err.contains("pre-flight"), "{err}");
            assert!(err.contains(&key), "{err}");
            assert!(err.contains("copy-image --encrypted"), "{err}");
            assert!(err.contains("set builder.kms_key"), "{err}");
            assert!(w.proxy.calls("RunInstances").is_empty());
        }
        w.proxy.clear_rewrites();
        w.proxy.clear_failures();
    }
}

/// A runner on its own task with `options`, so a test can look at AWS while it runs.
async fn spawn_build(
    w: &World,
    store: &DynStore,
    plan: BuildPlan,
    provisioner: Arc<dyn Provisioner>,
    options: BuildOptions,
) -> (
    tokio::task::JoinHandle<anyhow::Result<BuildOutcome>>,
    Arc<MemorySink>,
) {
    let session = Arc::new(
        AwsSession::connect(settings(&w.proxy.endpoint), &plan.builder.region)
            .await
            .unwrap(),
    );
    let sink = Arc::new(MemorySink::default());
    let log = BuildLog::new(Redactor::new(), vec![sink.clone()]);
    let runner = BuildRunner::new(session, store.clone(), provisioner, log, options);
    (tokio::spawn(async move { runner.run(plan).await }), sink)
}

/// Waits until a paused build wrote its marker; returns its build id.
async fn wait_paused(marker: &std::path::Path, log: &MemorySink) -> String {
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "never paused\n{}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(marker).unwrap()
}

/// The story of review finding H2: a pull request builds `base`, and while its image
/// exists (published, before it is discarded) a release of a recipe built on
/// `base` "latest" resolves its source. It must get the released `base`, never the
/// pull request's image, and the pull request's image is never tagged released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_image_is_never_latest_nor_released() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let release = plan("release-1.0.0", copies(&["us-east-1"], &[None]));
    let (ok, log) = build(
        &w,
        &store,
        release,
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built { manifest, .. } =
        ok.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!()
    };
    let released = manifest.builds[0].copies[0].ami.clone();

    let mut pr = plan("pr-7", copies(&["us-east-1"], &[None]));
    pr.image.ephemeral = true;
    let dir = tempfile::Builder::new()
        .prefix("bakery-pr-")
        .tempdir()
        .unwrap();
    let marker = dir.path().join("paused");
    let options = BuildOptions {
        pause: Some(bakery::build::hooks::PauseAt {
            step: bakery::build::runner::PAUSE_DISTRIBUTE_PUBLISHED.into(),
            marker: marker.clone(),
        }),
        ..BuildOptions::default()
    };
    let (task, log) = spawn_build(
        &w,
        &store,
        pr.clone(),
        Arc::new(RecordingProvisioner::default()),
        options,
    )
    .await;
    wait_paused(&marker, &log).await;

    let pr_images = images_named(&w, &t, &pr.image.name).await;
    assert_eq!(pr_images.len(), 1, "{}", log.text());
    let pr_tags = tag_map(pr_images[0].tags());
    assert_eq!(
        pr_tags.get(tag_keys::EPHEMERAL).map(String::as_str),
        Some("true")
    );
    assert!(
        !pr_tags.contains_key(tags::RELEASED),
        "a pull request's image was tagged released: {pr_tags:?}"
    );
    let source = bakery::aws::preflight::resolve_source(
        &w.check,
        &t,
        &SourcePlan::Recipe {
            recipe: "base".into(),
            version: "latest".into(),
        },
        Some("acme/images"),
    )
    .await
    .unwrap();
    assert_eq!(
        source.id, released,
        "`latest` resolved to the pull request's image"
    );

    // Even a pull request's image that carries `bakery:released` (tagged by an older
    // bakery, or by hand) is neither `latest` nor a release.
    w.check
        .ec2(&t)
        .unwrap()
        .create_tags()
        .resources(pr_images[0].image_id().unwrap())
        .tags(Tag::builder().key(tags::RELEASED).value("now").build())
        .send()
        .await
        .unwrap();
    let source = bakery::aws::preflight::resolve_source(
        &w.check,
        &t,
        &SourcePlan::Recipe {
            recipe: "base".into(),
            version: "latest".into(),
        },
        Some("acme/images"),
    )
    .await
    .unwrap();
    assert_eq!(source.id, released);
    let pr_version = bakery::aws::preflight::resolve_source(
        &w.check,
        &t,
        &SourcePlan::Recipe {
            recipe: "base".into(),
            version: "pr-7".into(),
        },
        Some("acme/images"),
    )
    .await;
    assert!(pr_version.is_err(), "{pr_version:?}");
    let state = bakery::aws::release::check(&w.check, &pr, std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(state, bakery::aws::release::ReleaseState::New);
    task.abort();
}

/// A provisioner that stops in the middle until the test lets it go.
#[derive(Default)]
struct GatedProvisioner {
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

#[async_trait]
impl Provisioner for GatedProvisioner {
    async fn provision(
        &self,
        _target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<ProvisionReport> {
        self.reached.notify_one();
        self.go.notified().await;
        Ok(ProvisionReport {
            release_file: ctx.plan.release_file.clone(),
            host_key_fingerprint: "SHA256:testhostkey".into(),
            inventory: None,
        })
    }
}

/// The story of review finding H4: two builds of the same image name run at once (an
/// operator's CLI with its own store, say). A is released while B provisions; B's copy
/// then fails because the name is taken. B's cleanup must delete only what B created:
/// A's images and snapshots survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_never_touches_another_builds_image_of_the_same_name() {
    let w = world().await;
    let (store_a, _dir_a) = temp_store().await;
    let (store_b, _dir_b) = temp_store().await;
    let p = plan(
        "release-6.0.0",
        copies(&["us-east-1", "eu-west-1"], &[None]),
    );
    let gate = Arc::new(GatedProvisioner::default());
    let (b, log_b) = spawn_build(
        &w,
        &store_b,
        p.clone(),
        gate.clone(),
        BuildOptions::default(),
    )
    .await;
    gate.reached.notified().await;

    let (a, log_a) = build(
        &w,
        &store_a,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built { manifest, .. } =
        a.unwrap_or_else(|e| panic!("{e:#}\n{}", log_a.text()))
    else {
        panic!()
    };

    w.proxy
        .fail("CopyImage", "InvalidAMIName.Duplicate", 10, |_| true);
    gate.go.notify_one();
    let err = b.await.unwrap().expect_err("B's copies cannot be made");
    assert!(format!("{err:#}").contains("cannot copy"), "{err:#}");
    w.proxy.clear_failures();

    for c in &manifest.builds[0].copies {
        let t = target(&c.account, &c.region);
        let ec2 = w.check.ec2(&t).unwrap();
        let images = ec2
            .describe_images()
            .owners("self")
            .image_ids(&c.ami)
            .send()
            .await
            .unwrap();
        assert_eq!(
            images.images().len(),
            1,
            "B's cleanup deleted A's image {} in {t}\n{}",
            c.ami,
            log_b.text()
        );
        for s in &c.snapshot_ids {
            let snaps = ec2
                .describe_snapshots()
                .filters(Filter::builder().name("snapshot-id").values(s).build())
                .send()
                .await
                .unwrap();
            assert_eq!(
                snaps.snapshots().len(),
                1,
                "B's cleanup deleted A's snapshot {s} in {t}"
            );
        }
    }
    let record = store_b
        .list_builds(&BuildFilter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let left = leftovers(&w, &plan_targets(&p), &record.build_id, false).await;
    assert!(left.is_empty(), "B left behind {left:#?}");
    // CopyImage answered with an error: B's journal knows nothing was created there (a
    // copy still in flight when the other failed may stay pending: its answer is lost).
    let entries = store_b.journal(&record.build_id).await.unwrap();
    let refused = entries.iter().filter(|e| e.kind == "not_created").count();
    assert!(refused >= 1, "no refused copy was settled");
    let replay = bakery::build::journal::Replay::from_entries(&entries);
    assert!(
        replay.ledger.pending.len() < p.distribute.copies.len(),
        "refused copies are still pending: {:?}",
        replay.ledger.pending
    );
}

/// The story of SECURITY A14: another repository where the App is installed releases its
/// own recipe `base`, at the same version and later. This repository's `latest` base is
/// still its own image, and its release of that version is neither "already released" nor
/// "moved".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_repository_cannot_poison_latest_or_a_release() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let ours = plan("release-7.0.0", copies(&["us-east-1"], &[None]));
    let (ok, log) = build(
        &w,
        &store,
        ours.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built { manifest, .. } =
        ok.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!()
    };
    let our_image = manifest.builds[0].copies[0].ami.clone();

    let mut theirs = plan("release-8.0.0", copies(&["us-east-1"], &[None]));
    theirs.repo = Some("mallory/images".into());
    theirs.git_sha = "fedcba9876543210fedcba9876543210fedcba98".into();
    theirs.image.name = "mallory-base-release-8.0.0".into();
    let mut theirs_same_version = theirs.clone();
    theirs_same_version.version = "release-9.0.0".into();
    theirs_same_version.image.name = "mallory-base-release-9.0.0".into();
    for p in [theirs, theirs_same_version.clone()] {
        let (r, log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
        r.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()));
    }

    let source = bakery::aws::preflight::resolve_source(
        &w.check,
        &t,
        &SourcePlan::Recipe {
            recipe: "base".into(),
            version: "latest".into(),
        },
        ours.repo.as_deref(),
    )
    .await
    .unwrap();
    assert_eq!(
        source.id, our_image,
        "another repository's image became our latest"
    );

    // Our release-9.0.0 is new to us, whatever mallory/images released under that name.
    let mut next = ours.clone();
    next.version = "release-9.0.0".into();
    next.image.name = "base-release-9.0.0".into();
    let state = bakery::aws::release::check(&w.check, &next, std::slice::from_ref(&t))
        .await
        .unwrap_or_else(|e| panic!("another repository's release is ours: {e:#}"));
    assert_eq!(state, bakery::aws::release::ReleaseState::New);
}

/// The target-account role's trust policy requires the external ID the operator put in
/// `policy.accounts."<id>".external_id`, and trusts the home account (whatever identity
/// the operator runs bakery as), not a role name the README never asks for. The oracle
/// judges each AssumeRole by that trust policy: a call without the configured external
/// ID, or with another one, or with a session name that is not bakery's, is denied;
/// bakery's own call, with the configured ID, is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_is_judged_by_the_trust_policy_and_its_external_id() {
    let w = world().await;
    w.proxy.judge_by_hand();
    let attempts: [(Option<&str>, &str); 4] = [
        (None, "bakery-no-external-id"),
        (Some("guessed"), "bakery-wrong-external-id"),
        (Some(iam_oracle::TARGET_EXTERNAL_ID), "someone-else"),
        (Some(iam_oracle::TARGET_EXTERNAL_ID), "bakery-configured"),
    ];
    for (external_id, name) in attempts {
        let session = AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
            .await
            .unwrap();
        let account = AccountTarget {
            external_id: external_id.map(String::from),
            ..other_account()
        };
        // moto checks no trust policy: every attempt gets credentials there.
        session.assume_role(&account, name).await.unwrap();
    }
    let calls = w.proxy.calls("AssumeRole");
    assert_eq!(calls.len(), 4);
    let verdict = iam_oracle::evaluate(&calls, &iam_oracle::Policies::deployed());
    let denied: Vec<&str> = verdict
        .denials
        .iter()
        .map(|d| calls.iter().find(|c| c.seq == d.seq).unwrap())
        .map(|c| c.param("RoleSessionName").unwrap())
        .collect();
    assert_eq!(
        denied,
        vec![
            "bakery-no-external-id",
            "bakery-wrong-external-id",
            "someone-else"
        ],
        "{verdict:#?}"
    );
}

/// The operator's example configuration sets, for every target account, the external ID
/// the shipped trust policy requires, and that trust policy trusts the home account
/// rather than an identity name the setup never creates.
#[test]
fn the_example_configuration_gives_every_account_the_external_id_the_trust_requires() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let trust: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/aws/target-account-role-trust.json")).unwrap(),
    )
    .unwrap();
    let statement = &trust["Statement"][0];
    assert_eq!(
        statement["Principal"]["AWS"], "arn:aws:iam::HOME_ACCOUNT_ID:root",
        "{trust}"
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"], "EXTERNAL_ID",
        "{trust}"
    );
    let example: toml::Table = std::fs::read_to_string(root.join("deploy/bakery.toml.example"))
        .unwrap()
        .parse()
        .unwrap();
    let policy = example["policy"].as_table().unwrap();
    let mut policies: Vec<&toml::Value> = policy.get("default").into_iter().collect();
    if let Some(repos) = policy.get("repos").and_then(|r| r.as_table()) {
        policies.extend(repos.values());
    }
    let mut accounts = 0;
    for p in policies {
        for (id, account) in p
            .get("accounts")
            .and_then(|a| a.as_table())
            .into_iter()
            .flatten()
        {
            accounts += 1;
            let ext = account.get("external_id").and_then(|e| e.as_str());
            assert!(
                ext.is_some_and(|e| !e.is_empty()),
                "account {id} has no external_id"
            );
        }
    }
    assert!(accounts > 0, "the example configures no target account");
}

/// VPC interface endpoints are per service and per region. With `aws.endpoints`, each
/// client goes to the endpoint of its own service and region, and everything else to the
/// fallback `endpoint_url`: EC2 in us-east-1 and STS go to one endpoint, EC2, KMS and SSM
/// in eu-west-1 to another, and KMS and SSM in us-east-1 and EC2 in ap-southeast-2 to
/// neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_and_region_goes_to_its_own_endpoint() {
    let w = world().await;
    let second = AwsProxy::start(w.moto.port).await;
    let mut s = settings(&w.moto.endpoint);
    let first_url = w.proxy.endpoint.clone();
    s.endpoints
        .ec2
        .insert("us-east-1".into(), first_url.clone());
    s.endpoints.sts.insert("us-east-1".into(), first_url);
    s.endpoints
        .ec2
        .insert("eu-west-1".into(), second.endpoint.clone());
    s.endpoints
        .kms
        .insert("eu-west-1".into(), second.endpoint.clone());
    s.endpoints
        .ssm
        .insert("eu-west-1".into(), second.endpoint.clone());
    let session = AwsSession::connect(s, "us-east-1").await.unwrap();
    session
        .assume_role(&other_account(), "bakery-endpoints")
        .await
        .unwrap();
    for region in REGIONS {
        for account in [HOME, OTHER] {
            let t = target(account, region);
            session
                .ec2(&t)
                .unwrap()
                .describe_images()
                .owners("self")
                .send()
                .await
                .unwrap();
            if account == HOME {
                session
                    .kms(&t)
                    .unwrap()
                    .describe_key()
                    .key_id("alias/ami")
                    .send()
                    .await
                    .unwrap();
                // No such parameter: the answer is an error, but it came from there.
                let probe = session
                    .ssm(&t)
                    .unwrap()
                    .list_tags_for_resource()
                    .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                    .resource_id("/bakery/endpoint-probe")
                    .send()
                    .await;
                assert!(probe.is_err());
            }
        }
    }
    let seen = |p: &AwsProxy| -> BTreeSet<(String, String, String)> {
        p.requests()
            .iter()
            .map(|c| (c.service.clone(), c.region.clone(), c.action.clone()))
            .collect()
    };
    let own = |v: &[(&str, &str, &str)]| -> BTreeSet<(String, String, String)> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    };
    assert_eq!(
        seen(&w.proxy),
        own(&[
            ("ec2", "us-east-1", "DescribeImages"),
            ("sts", "us-east-1", "AssumeRole"),
            ("sts", "us-east-1", "GetCallerIdentity"),
        ])
    );
    assert_eq!(
        seen(&second),
        own(&[
            ("ec2", "eu-west-1", "DescribeImages"),
            ("kms", "eu-west-1", "DescribeKey"),
            ("ssm", "eu-west-1", "ListTagsForResource"),
        ])
    );
    // Both accounts' EC2 in us-east-1 went there, and GetCallerIdentity was asked as the
    // home identity and as the assumed role.
    assert_eq!(w.proxy.calls("DescribeImages").len(), 2);
    assert_eq!(w.proxy.calls("GetCallerIdentity").len(), 2);
    assert_eq!(second.calls("DescribeImages").len(), 2);
}

/// EC2 copies no image derived from an AWS Marketplace image into another account. A
/// source that carries a Marketplace product code fails pre-flight, naming the image and
/// the code, before any launch, when copies go to another account; a plan that stays in
/// the home account builds from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketplace_source_is_refused_before_a_cross_account_copy() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    const CODE: &str = "aw0evgkw8e5c1q413zgy5pjce";
    for (version, accounts) in [
        ("release-market-shared", vec![None, Some(other_account())]),
        ("release-market-home", vec![None]),
    ] {
        w.proxy.rewrite(
            "DescribeImages",
            1,
            |r| r.param("Owner.1") == Some("amazon"),
            |body| {
                let codes = format!(
                    "<productCodes><item><productCode>{CODE}</productCode>\
                     <type>marketplace</type></item></productCodes>"
                );
                *body = body.replace("<productCodes/>", &codes);
            },
        );
        let shared = accounts.len() > 1;
        let plan = plan(version, copies(&REGIONS[..1], &accounts));
        let provisioner = Arc::new(RecordingProvisioner::default());
        let (outcome, log) = build(&w, &store, plan, provisioner).await;
        if shared {
            let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
            assert!(err.contains("pre-flight"), "{err}");
            assert!(err.contains("AWS Marketplace"), "{err}");
            assert!(err.contains(CODE), "{err}");
            assert!(err.contains(OTHER), "{err}");
            assert!(w.proxy.calls("RunInstances").is_empty());
            assert!(w.proxy.calls("CopyImage").is_empty());
        } else {
            outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
        }
        w.proxy.clear_rewrites();
    }
}

mod concurrent;
mod kms_keys;
mod network;
mod parameters;
mod runner_faults;

/// The home `alias/ami` key's ARN in us-east-1, and an answer edit that makes every
/// snapshot a DescribeSnapshots answer lists encrypted under it, as the intermediate of
/// an encrypted source is on AWS (moto makes it unencrypted).
fn encrypted_snapshots(w: &World) -> (String, impl Fn(&mut String) + Send + Sync + 'static) {
    let key = w.keys[&target(HOME, "us-east-1")].clone();
    let k = key.clone();
    (key, move |body: &mut String| {
        *body = body.replace(
            "<encrypted>false</encrypted>",
            &format!("<encrypted>true</encrypted><kmsKeyId>{k}</kmsKeyId>"),
        );
    })
}

/// The grants on `key` (in the home account, us-east-1) whose name is `bakery-<build>`.
async fn bakery_grants(w: &World, key: &str) -> Vec<(String, String)> {
    w.check
        .kms(&target(HOME, "us-east-1"))
        .unwrap()
        .list_grants()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .filter(|g| g.name().is_some_and(|n| n.starts_with("bakery-")))
        .map(|g| {
            (
                g.grant_id().unwrap_or_default().to_string(),
                g.name().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// An encrypted intermediate is shared with the other account through a KMS grant on the
/// home key. The grant gives only the operations AWS documents for copying a shared
/// encrypted snapshot, is waited on until KMS lists it, and is revoked once the copies
/// exist. Then a second release fails while copying into the other account: its grant is
/// revoked by the failure cleanup too, never left giving the other account Decrypt and
/// CreateGrant on the home key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_grants_for_other_accounts_are_revoked_on_success_and_on_failure() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let (key, edit) = encrypted_snapshots(&w);
    w.proxy.rewrite(
        "DescribeSnapshots",
        10_000,
        |r| {
            r.access_key == ACCESS_KEY
                && r.region == "us-east-1"
                && r.param("SnapshotId.1").is_some()
        },
        edit,
    );
    // KMS grants are eventually consistent; moto lists a grant at once. The first two
    // ListGrants answers do not show it yet, as KMS may for minutes.
    w.proxy.rewrite(
        "ListGrants",
        2,
        |_| true,
        |body| *body = r#"{"Grants": [], "Truncated": false}"#.to_string(),
    );
    let ok = plan(
        "release-grant-ok",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    let (outcome, log) = build(&w, &store, ok, Arc::new(RecordingProvisioner::default())).await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let created = w.proxy.calls("CreateGrant");
    assert_eq!(
        created.len(),
        1,
        "one grant, to the other account: {created:#?}"
    );
    let grant = &created[0];
    assert_eq!(grant.param("KeyId"), Some(key.as_str()));
    assert_eq!(
        grant.param("GranteePrincipal"),
        Some(format!("arn:aws:iam::{OTHER}:root").as_str())
    );
    let mut ops = grant.list("Operations");
    ops.sort();
    assert_eq!(
        ops,
        [
            "CreateGrant",
            "Decrypt",
            "DescribeKey",
            "GenerateDataKey",
            "ReEncryptFrom",
            "ReEncryptTo"
        ],
        "only the documented operations"
    );
    let grant_id = serde_json::from_str::<serde_json::Value>(&grant.response).unwrap()["GrantId"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = w.proxy.calls("ListGrants");
    let first_copy = w
        .proxy
        .calls("CopyImage")
        .iter()
        .map(|c| c.seq)
        .min()
        .unwrap();
    let before_copy: Vec<_> = listed
        .iter()
        .filter(|l| l.seq > grant.seq && l.seq < first_copy)
        .collect();
    assert_eq!(
        before_copy.len(),
        3,
        "bakery asks until the grant is listed (twice not yet, then listed), before any copy uses it: {listed:#?}"
    );
    assert!(before_copy[2].response.contains(&grant_id));
    assert!(w
        .proxy
        .calls("RevokeGrant")
        .iter()
        .any(|r| r.param("GrantId") == Some(grant_id.as_str())));
    assert_eq!(bakery_grants(&w, &key).await, vec![], "no grant is left");

    w.proxy.clear();
    w.proxy.fail("CopyImage", "InvalidRequest", 1, |r| {
        r.access_key != ACCESS_KEY
    });
    let failing = plan(
        "release-grant-failing",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    let (outcome, log) = build(
        &w,
        &store,
        failing,
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    assert!(
        outcome.is_err(),
        "the copy into {OTHER} fails\n{}",
        log.text()
    );
    let created = w.proxy.calls("CreateGrant");
    assert_eq!(created.len(), 1, "{created:#?}");
    let revoked = w.proxy.calls("RevokeGrant");
    for c in &created {
        let id = serde_json::from_str::<serde_json::Value>(&c.response).unwrap()["GrantId"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            revoked
                .iter()
                .any(|r| r.param("GrantId") == Some(id.as_str())),
            "grant {id} of the failed build is revoked: {revoked:#?}\n{}",
            log.text()
        );
    }
    assert_eq!(bakery_grants(&w, &key).await, vec![], "no grant is left");
}

/// A replica crashed after granting the other account use of the home key: one grant is
/// in the journal, the answer of a second CreateGrant was lost (only `creating` was
/// written). The build failed; the janitor revokes both, the lost one found by the
/// build's grant name. A running build's grant and a grant bakery did not make stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_revokes_the_kms_grants_of_a_crashed_build() {
    use bakery::aws::janitor::{self, JanitorOptions};
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let key = w.keys[&t].clone();
    let kms = w.check.kms(&t).unwrap();
    let grant = |name: &str| {
        let kms = kms.clone();
        let key = key.clone();
        let name = name.to_string();
        async move {
            kms.create_grant()
                .key_id(key)
                .grantee_principal(format!("arn:aws:iam::{OTHER}:root"))
                .name(name)
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .send()
                .await
                .unwrap()
                .grant_id()
                .unwrap()
                .to_string()
        }
    };
    let journaled = grant("bakery-crashed-build").await;
    let lost = grant("bakery-crashed-build").await;
    let running = grant("bakery-running-build").await;
    let foreign = grant("someone-elses-grant").await;
    let p = plan(
        "release-grant-crash",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    for (id, state) in [
        ("crashed-build", BuildState::Failed),
        ("running-build", BuildState::Running),
    ] {
        store
            .upsert_build(&BuildRecord {
                build_id: id.into(),
                job_id: None,
                recipe: "base".into(),
                version: "release-grant-crash".into(),
                git_sha: SHA.into(),
                state,
                plan: serde_json::to_value(&p).unwrap(),
                manifest: None,
                error: None,
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    store.heartbeat_build("running-build").await.unwrap();
    let place = |build: &str| {
        serde_json::json!({
            "type": "kms_grant", "region": "us-east-1", "account": HOME,
            "lookup": { "key": key, "name": format!("bakery-{build}"),
                        "grantee": format!("arn:aws:iam::{OTHER}:root") },
        })
    };
    let entries = [
        ("crashed-build", "creating", place("crashed-build")),
        (
            "crashed-build",
            "created",
            serde_json::json!({
                "type": "kms_grant", "id": format!("{key}#{journaled}"),
                "region": "us-east-1", "account": HOME, "detail": {},
            }),
        ),
        ("crashed-build", "creating", place("crashed-build")),
        ("running-build", "creating", place("running-build")),
        (
            "running-build",
            "created",
            serde_json::json!({
                "type": "kms_grant", "id": format!("{key}#{running}"),
                "region": "us-east-1", "account": HOME, "detail": {},
            }),
        ),
    ];
    for (build, kind, data) in entries {
        store
            .append_journal(
                build,
                &JournalEntry {
                    kind: kind.into(),
                    data,
                },
            )
            .await
            .unwrap();
    }
    let report = janitor::run(
        &w.check,
        store.as_ref(),
        std::slice::from_ref(&t),
        &JanitorOptions {
            ttl: Duration::from_secs(6 * 3600),
            dry_run: false,
            now: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
    let left: Vec<String> = bakery_grants(&w, &key)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        !left.contains(&journaled) && !left.contains(&lost),
        "the crashed build's grants are revoked: left {left:?}, report {:#?}",
        report.findings
    );
    assert!(left.contains(&running), "a running build's grant stays");
    let all: Vec<String> = kms
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .filter_map(|g| g.grant_id().map(str::to_string))
        .collect();
    assert!(all.contains(&foreign), "a grant bakery did not make stays");
}

/// The key a copy is encrypted under must be a customer managed, symmetric encryption
/// key: an AWS managed key cannot be shared or granted, and an asymmetric or HMAC key
/// cannot encrypt EBS at all (CopyImage would only fail later, asynchronously).
/// Pre-flight reads DescribeKey and refuses each with the key, the reason and the fix,
/// before anything is launched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_aws_managed_asymmetric_and_hmac_copy_keys() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let key = w.keys[&target(OTHER, "eu-west-1")].clone();
    for (version, from, to, reason) in [
        (
            "release-key-aws",
            "\"KeyManager\": \"CUSTOMER\"",
            "\"KeyManager\": \"AWS\"",
            "AWS managed",
        ),
        (
            "release-key-rsa",
            "\"KeySpec\": \"SYMMETRIC_DEFAULT\"",
            "\"KeySpec\": \"RSA_2048\"",
            "RSA_2048",
        ),
        (
            "release-key-hmac",
            "\"KeySpec\": \"SYMMETRIC_DEFAULT\"",
            "\"KeySpec\": \"HMAC_256\"",
            "HMAC_256",
        ),
    ] {
        let (from, to) = (from.to_string(), to.to_string());
        w.proxy.rewrite(
            "DescribeKey",
            100,
            |r| r.region == "eu-west-1" && r.access_key != ACCESS_KEY,
            move |body| {
                let compact_from = from.replace(": ", ":");
                let compact_to = to.replace(": ", ":");
                *body = body.replace(&from, &to).replace(&compact_from, &compact_to);
            },
        );
        let p = plan(
            version,
            copies(&["eu-west-1"], &[None, Some(other_account())]),
        );
        let (outcome, log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
        let err = format!(
            "{:#}",
            outcome.expect_err(&format!(
                "pre-flight must refuse the key\n{}\nDescribeKey answers: {:#?}",
                log.text(),
                w.proxy
                    .calls("DescribeKey")
                    .iter()
                    .map(|c| (c.region.clone(), c.access_key.clone(), c.response.clone()))
                    .collect::<Vec<_>>()
            ))
        );
        assert!(err.contains("pre-flight"), "{err}");
        assert!(err.contains(&key), "{err}");
        assert!(err.contains(reason), "{err}");
        assert!(err.contains("customer managed symmetric"), "{err}");
        assert!(w.proxy.calls("RunInstances").is_empty(), "{reason}");
        w.proxy.clear_rewrites();
        w.proxy.clear();
    }
}
