//! bakery's side of `bench/ssh-upload/run.sh`: connects to a builder and runs one file
//! step (upload, remote sha256 check, placement), then prints the seconds it took.
//!
//!   ssh_upload_bench HOST PORT USER KEY_FILE REPO_ROOT SOURCE DESTINATION

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bakery::build::BuildLog;
use bakery::plan::model::{BuildFacts, FileStep};
use bakery::provision::steps::{file, Session};
use bakery::provision::{ProvisionerOptions, SshProvisioner, SshTarget};
use bakery::redact::Redactor;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user, key, repo, source, destination] = &args[..] else {
        anyhow::bail!(
            "usage: ssh_upload_bench HOST PORT USER KEY_FILE REPO_ROOT SOURCE DESTINATION"
        );
    };
    let key = russh::keys::load_secret_key(key, None)
        .with_context(|| format!("cannot load the key {key}"))?;
    let target = SshTarget {
        host: host.clone(),
        port: port.parse().context("PORT")?,
        user: user.clone(),
        key: Arc::new(key),
        host_key_pins: Vec::new(),
        known_host_key: None,
    };
    let log = BuildLog::new(Redactor::new(), Vec::new());
    let cancel = CancellationToken::new();
    let provisioner = SshProvisioner::new(ProvisionerOptions::default());
    let facts = BuildFacts {
        build_id: "bench".into(),
        source_ami: "none".into(),
    };
    let started = Instant::now();
    let ctx = bakery::provision::ProvisionContext {
        plan: Arc::new(bakery::provision::ProvisionPlan::for_ec2(
            &bench_plan(),
            &facts,
        )),
        repo_root: PathBuf::from(repo),
        log: log.clone(),
        cancel: cancel.clone(),
    };
    let comm = provisioner.connect(&target, &ctx).await?;
    let mut session = Session::new(
        comm,
        log,
        cancel,
        provisioner.options().clone(),
        "/var/tmp/bakery-bench".into(),
        PathBuf::from(repo),
    );
    file::run(
        &mut session,
        &FileStep {
            name: "bench".into(),
            source: source.into(),
            destination: destination.clone(),
            mode: None,
            owner: None,
        },
    )
    .await?;
    session.comm.close().await;
    println!("{:.3}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The plan is not used by a lone file step; the context wants one.
fn bench_plan() -> bakery::plan::model::BuildPlan {
    use bakery::plan::model::*;
    use std::collections::BTreeMap;
    BuildPlan {
        repo: None,
        recipe: "bench".into(),
        version: "bench".into(),
        git_sha: "0".repeat(40),
        build_time: "1970-01-01T00:00:00Z".into(),
        source: SourcePlan::AmiId { id: "none".into() },
        builder: BuilderPlan {
            region: "none".into(),
            instance_type: "none".into(),
            subnet_id: None,
            volume_size_gb: 8,
            volume_type: "gp3".into(),
            ssh_user: "builder".into(),
            connect: ConnectVia::PublicIp,
            ssh_cidr: "127.0.0.1/32".into(),
            imdsv2_required: true,
            kms_key: None,
        },
        provision: Vec::new(),
        stamp: StampPlan {
            path: "/etc/release".into(),
            extra: BTreeMap::new(),
        },
        verify: Vec::new(),
        seal: SealPlan::default(),
        image: ImagePlan {
            name: "bench".into(),
            description: String::new(),
            tags: BTreeMap::new(),
            snapshot_tags: BTreeMap::new(),
            ephemeral: false,
        },
        distribute: DistributePlan {
            encrypted: false,
            copies: Vec::new(),
            launch_permissions: LaunchPermissions::default(),
            deprecate_after_secs: None,
        },
    }
}
