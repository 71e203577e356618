//! The SSH provisioner against a real, sandboxed OpenSSH sshd (see `support::sandbox`).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bakery::build::log::MemorySink;
use bakery::build::BuildLog;
use bakery::plan::model::*;
use bakery::provision::communicator::ConnectOptions;
use bakery::provision::{
    ProvisionContext, ProvisionPlan, ProvisionReport, Provisioner, ProvisionerOptions,
    SshProvisioner, SshTarget,
};
use bakery::redact::Redactor;
use tokio_util::sync::CancellationToken;

use crate::support::sandbox::{generate_key, Sandbox, SandboxOptions};

/// Every test gives up after this long, so a hang fails instead of blocking the run.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(600);

pub(crate) fn plan(provision: Vec<ProvisionStep>) -> BuildPlan {
    BuildPlan {
        repo: None,
        recipe: "base".into(),
        version: "release-0.1.0".into(),
        git_sha: "0123456789abcdef0123456789abcdef01234567".into(),
        build_time: "2025-01-02T03:04:05Z".into(),
        source: SourcePlan::AmiId {
            id: "ami-0source".into(),
        },
        builder: BuilderPlan {
            region: "eu-west-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: None,
            volume_size_gb: 8,
            volume_type: "gp3".into(),
            ssh_user: "builder".into(),
            connect: ConnectVia::PublicIp,
            ssh_cidr: "127.0.0.1/32".into(),
            imdsv2_required: true,
            kms_key: None,
        },
        provision,
        stamp: StampPlan {
            path: "/etc/release".into(),
            extra: BTreeMap::from([("TEAM".to_string(), "platform".to_string())]),
        },
        verify: Vec::new(),
        seal: SealPlan::default(),
        image: ImagePlan {
            name: "base-release-0.1.0".into(),
            description: "base".into(),
            tags: BTreeMap::new(),
            snapshot_tags: BTreeMap::new(),
            ephemeral: false,
        },
        distribute: DistributePlan {
            encrypted: true,
            copies: Vec::new(),
            launch_permissions: LaunchPermissions::default(),
            deprecate_after_secs: None,
        },
    }
}

pub(crate) fn facts() -> BuildFacts {
    BuildFacts {
        build_id: format!("b-{}", uuid::Uuid::new_v4().simple()),
        source_ami: "ami-0source".into(),
    }
}

pub(crate) fn shell(name: &str, commands: &[&str]) -> ShellStep {
    ShellStep {
        name: name.into(),
        run: ShellRun::Inline {
            commands: commands.iter().map(|c| c.to_string()).collect(),
        },
        env: BTreeMap::new(),
        sudo: false,
        expect_disconnect: false,
        timeout_secs: 300,
    }
}

pub(crate) fn no_seal() -> SealPlan {
    SealPlan {
        enabled: false,
        ..SealPlan::default()
    }
}

/// A sandbox, a build key authorized in it, and a log that keeps its lines.
pub(crate) struct Rig {
    pub(crate) sandbox: Sandbox,
    pub(crate) target: SshTarget,
    pub(crate) sink: Arc<MemorySink>,
    pub(crate) redactor: Redactor,
    pub(crate) repo: tempfile::TempDir,
}

impl Rig {
    pub(crate) fn start() -> Rig {
        let key = generate_key();
        let sandbox = Sandbox::start(SandboxOptions::with_key(&key)).expect("start the sandbox");
        let target = sandbox.ssh_target(key);
        Rig {
            sandbox,
            target,
            sink: Arc::new(MemorySink::default()),
            redactor: Redactor::new(),
            repo: tempfile::tempdir().expect("repo dir"),
        }
    }

    pub(crate) fn repo(&self) -> &Path {
        self.repo.path()
    }

    pub(crate) fn write(&self, rel: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.repo().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    pub(crate) fn ctx(&self, plan: BuildPlan, facts: BuildFacts) -> ProvisionContext {
        ProvisionContext {
            plan: Arc::new(ProvisionPlan::for_ec2(&plan, &facts)),
            repo_root: self.repo().to_path_buf(),
            log: BuildLog::new(self.redactor.clone(), vec![self.sink.clone()]),
            cancel: CancellationToken::new(),
        }
    }

    pub(crate) fn provisioner() -> SshProvisioner {
        SshProvisioner::new(ProvisionerOptions {
            connect: ConnectOptions {
                budget: Duration::from_secs(120),
                ..ConnectOptions::default()
            },
            disconnect_grace: Duration::from_secs(5),
        })
    }

    pub(crate) async fn provision(&self, plan: BuildPlan) -> anyhow::Result<ProvisionReport> {
        self.provision_with(&Self::provisioner(), &self.target, plan)
            .await
    }

    pub(crate) async fn provision_with(
        &self,
        p: &SshProvisioner,
        target: &SshTarget,
        plan: BuildPlan,
    ) -> anyhow::Result<ProvisionReport> {
        let ctx = self.ctx(plan, facts());
        tokio::time::timeout(HANG_GUARD, p.provision(target, &ctx))
            .await
            .expect("provisioning hung")
    }

    pub(crate) fn log(&self) -> String {
        self.sink.text()
    }
}

fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[tokio::test]
async fn end_to_end_provision_stamp_verify_seal() {
    let rig = Rig::start();
    rig.write("files/motd", b"welcome to the image\n", 0o644);
    let mut greet = shell(
        "greet",
        &[
            "echo \"hello $GREETING from $(id -un)\"",
            "id -un > /tmp/whoami-root",
        ],
    );
    greet.env.insert("GREETING".into(), "world".into());
    greet.sudo = true;
    let mut p = plan(vec![
        ProvisionStep::Shell(greet),
        ProvisionStep::File(FileStep {
            name: "motd".into(),
            source: "files/motd".into(),
            destination: "/etc/motd".into(),
            mode: Some(0o644),
            owner: None,
        }),
    ]);
    p.verify = vec![
        VerifyCheck::File {
            name: "release version".into(),
            path: "/etc/release".into(),
            expect_content: None,
        },
        VerifyCheck::Command {
            name: "first line".into(),
            command: "head -n1 /etc/release".into(),
            sudo: false,
            expect_exit: 0,
            expect_stdout: Some("release-0.1.0".into()),
        },
        VerifyCheck::File {
            name: "motd".into(),
            path: "/etc/motd".into(),
            expect_content: Some("welcome to the image".into()),
        },
    ];
    let facts = facts();
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = accepted.clone();
    let provisioner = Rig::provisioner().on_host_key(Arc::new(move |fp: &str| {
        seen.lock().unwrap().push(fp.to_string())
    }));
    let ctx = rig.ctx(p.clone(), facts.clone());
    let report = tokio::time::timeout(HANG_GUARD, provisioner.provision(&rig.target, &ctx))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("provisioning failed: {e:#}\n{}", rig.log()));

    // The release file, read back from the sandbox.
    let release = rig.sandbox.read("/etc/release").unwrap();
    assert_eq!(release, report.release_file);
    assert_eq!(release, p.release_file(&facts));
    let lines: Vec<&str> = release.lines().collect();
    assert_eq!(lines[0], "release-0.1.0");
    assert!(lines.contains(&"RECIPE=base"));
    assert!(lines.contains(&"GIT_SHA=0123456789abcdef0123456789abcdef01234567"));
    assert!(lines.contains(&format!("BUILD_ID={}", facts.build_id).as_str()));
    assert!(lines.contains(&"BUILD_TIME=2025-01-02T03:04:05Z"));
    assert!(lines.contains(&"SOURCE_AMI=ami-0source"));
    assert!(lines.contains(&"TEAM=platform"));
    let meta = std::fs::metadata(rig.sandbox.path("/etc/release")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    // The steps ran, in order, as asked.
    let log = rig.log();
    assert!(log.contains("hello world from root"), "{log}");
    assert_eq!(rig.sandbox.read("/tmp/whoami-root").unwrap(), "root\n");
    assert_eq!(
        rig.sandbox.read("/etc/motd").unwrap(),
        "welcome to the image\n"
    );
    let motd = std::fs::metadata(rig.sandbox.path("/etc/motd")).unwrap();
    assert_eq!((motd.uid(), motd.permissions().mode() & 0o7777), (0, 0o644));
    assert!(log.contains("check `first line` passed"), "{log}");

    // The host key: accepted on first use, reported, handed to the callback.
    assert_eq!(
        report.host_key_fingerprint,
        rig.sandbox.host_key_fingerprint
    );
    assert_eq!(
        *accepted.lock().unwrap(),
        vec![report.host_key_fingerprint.clone()]
    );
    assert!(log.contains(&report.host_key_fingerprint), "{log}");
}

#[tokio::test]
async fn upload_of_100_mb_keeps_every_byte() {
    let rig = Rig::start();
    let mut data = vec![0u8; 100 * 1024 * 1024];
    rand::fill(&mut data[..]);
    let local = rig.write("big.bin", &data, 0o600);
    drop(data);
    let mut p = plan(vec![ProvisionStep::File(FileStep {
        name: "big".into(),
        source: "big.bin".into(),
        destination: "/opt/blobs/big.bin".into(),
        mode: Some(0o640),
        owner: None,
    })]);
    p.seal = no_seal();
    rig.provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));

    let remote = rig.sandbox.path("/opt/blobs/big.bin");
    let meta = std::fs::metadata(&remote).unwrap();
    assert_eq!(meta.len(), 100 * 1024 * 1024);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), 0, "a root-owned place gets a root-owned file");
    assert_eq!(sha256_of(&remote), sha256_of(&local));
    assert!(rig.log().contains("sha256"), "{}", rig.log());
}

#[tokio::test]
async fn directory_upload_preserves_modes_and_content() {
    let rig = Rig::start();
    rig.write("app/bin/run.sh", b"#!/bin/sh\necho run\n", 0o755);
    rig.write("app/conf/secret.conf", b"token=abc\n", 0o600);
    rig.write("app/conf/app.conf", b"name='it''s'\n", 0o644);
    rig.write("app/data/with space.txt", b"spaced\n", 0o640);
    std::fs::set_permissions(
        rig.repo().join("app/conf"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/run.sh", rig.repo().join("app/run")).unwrap();
    let tree = |name: &str, dest: &str, owner: Option<&str>| {
        ProvisionStep::File(FileStep {
            name: name.into(),
            source: "app".into(),
            destination: dest.into(),
            mode: None,
            owner: owner.map(String::from),
        })
    };
    let mut p = plan(vec![
        tree("to-root", "/opt/app", None),
        tree("to-home", "/home/builder/app", None),
        tree("owned", "/srv/app", Some("builder:builder")),
    ]);
    p.seal = no_seal();
    rig.provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));

    for (dest, uid) in [
        ("/opt/app", 0),
        ("/home/builder/app", 1000),
        ("/srv/app", 1000),
    ] {
        for (rel, mode) in [
            ("bin/run.sh", 0o755),
            ("conf/secret.conf", 0o600),
            ("conf/app.conf", 0o644),
            ("data/with space.txt", 0o640),
            ("conf", 0o750),
        ] {
            let local = rig.repo().join("app").join(rel);
            let remote = rig.sandbox.path(&format!("{dest}/{rel}"));
            let meta = std::fs::metadata(&remote)
                .unwrap_or_else(|e| panic!("{dest}/{rel}: {e}\n{}", rig.log()));
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{dest}/{rel}");
            assert_eq!(meta.uid(), uid, "{dest}/{rel} owner");
            if meta.is_file() {
                assert_eq!(
                    std::fs::read(&remote).unwrap(),
                    std::fs::read(&local).unwrap()
                );
            }
        }
        let link = std::fs::read_link(rig.sandbox.path(&format!("{dest}/run"))).unwrap();
        assert_eq!(link, PathBuf::from("bin/run.sh"));
    }
}

#[tokio::test]
async fn failing_command_reports_step_exit_status_and_stderr() {
    let rig = Rig::start();
    let mut p = plan(vec![ProvisionStep::Shell(shell(
        "configure",
        &[
            "echo first",
            "echo 'disk is full' >&2; exit 3",
            "echo never-runs",
        ],
    ))]);
    p.seal = no_seal();
    let err = rig.provision(p).await.expect_err("the step must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("provision step `configure`"), "{msg}");
    assert!(msg.contains("echo 'disk is full' >&2; exit 3"), "{msg}");
    assert!(msg.contains("exited with status 3"), "{msg}");
    assert!(msg.contains("disk is full"), "{msg}");
    let log = rig.log();
    assert!(log.contains("first"), "{log}");
    assert!(!log.contains("never-runs\n"), "{log}");
    assert!(
        !rig.sandbox.exists("/etc/release"),
        "nothing after a failed step runs"
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_fails() {
    let rig = Rig::start();
    let mut slow = shell("slow", &["echo started; sleep 300"]);
    slow.timeout_secs = 2;
    let mut p = plan(vec![ProvisionStep::Shell(slow)]);
    p.seal = no_seal();
    let err = rig.provision(p).await.expect_err("the step must time out");
    let msg = format!("{err:#}");
    assert!(msg.contains("provision step `slow`"), "{msg}");
    assert!(
        msg.contains("did not finish within the step's timeout of 2s"),
        "{msg}"
    );
    assert!(msg.contains("sleep 300"), "{msg}");
    // The whole process group went, not just the shell. bakery returns once the shell's
    // end is reported; its `sleep`, killed with it, may take a moment longer to be reaped
    // on a busy machine. Left alive, it would still be there after 300 s, not 5.
    let started = std::time::Instant::now();
    let left = loop {
        let left: Vec<_> = rig
            .sandbox
            .processes()
            .into_iter()
            .filter(|(_, _, comm)| comm == "sleep")
            .collect();
        if left.is_empty() || started.elapsed() > std::time::Duration::from_secs(5) {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(left.is_empty(), "still running: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_mid_command_is_an_error_not_a_hang() {
    let rig = Arc::new(Rig::start());
    let mut p = plan(vec![ProvisionStep::Shell(shell(
        "long-job",
        &["sleep 600"],
    ))]);
    p.seal = no_seal();
    let task = {
        let rig = rig.clone();
        tokio::spawn(async move { rig.provision(p).await })
    };
    // Wait for the command to run, then cut the connection from the builder's side.
    let mut killed = 0;
    for _ in 0..1200 {
        if rig
            .sandbox
            .processes()
            .iter()
            .any(|(_, _, comm)| comm == "sleep")
        {
            killed = rig.sandbox.kill_ssh_sessions();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed > 0, "the command never started:\n{}", rig.log());
    let err = tokio::time::timeout(Duration::from_secs(300), task)
        .await
        .expect("a dropped connection must not hang")
        .unwrap()
        .expect_err("a dropped connection is an error");
    let msg = format!("{err:#}");
    assert!(msg.contains("provision step `long-job`"), "{msg}");
    assert!(msg.contains("`sleep 600`"), "{msg}");
    assert!(msg.contains("connection to the builder was lost"), "{msg}");
}

#[tokio::test]
async fn a_reboot_drops_the_connection_and_the_next_step_runs_after_reconnecting() {
    let rig = Rig::start();
    rig.write(
        "scripts/after.sh",
        b"#!/bin/sh\necho \"after reboot as $(id -un)\" > /home/builder/after-reboot\n",
        0o755,
    );
    let mut reboot = shell(
        "reboot",
        &[
            "echo rebooting",
            "reboot",
            "echo not-reached-before-reconnect",
        ],
    );
    reboot.sudo = true;
    reboot.expect_disconnect = true;
    let after = ShellStep {
        name: "after".into(),
        run: ShellRun::Script {
            path: "scripts/after.sh".into(),
        },
        ..shell("after", &[])
    };
    let mut p = plan(vec![
        ProvisionStep::Shell(reboot),
        ProvisionStep::Shell(after),
    ]);
    p.seal = no_seal();
    let report = rig
        .provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert_eq!(
        rig.sandbox.read("/home/builder/after-reboot").unwrap(),
        "after reboot as builder\n"
    );
    let log = rig.log();
    assert!(
        log.contains("connection dropped as expected; reconnecting"),
        "{log}"
    );
    assert!(log.contains("reconnected; host key"), "{log}");
    // The rest of the step ran on the new connection.
    assert!(log.contains("not-reached-before-reconnect"), "{log}");
    assert_eq!(
        report.host_key_fingerprint,
        rig.sandbox.host_key_fingerprint
    );
}

#[tokio::test]
async fn a_real_ansible_playbook_runs_against_the_builder() {
    let rig = Rig::start();
    rig.write(
        "ansible/site.yml",
        br#"- hosts: all
  gather_facts: false
  tasks:
    - name: write the version
      ansible.builtin.copy:
        dest: /etc/ansible-stamp
        content: "{{ bakery_version }} {{ bakery_recipe }} {{ bakery_git_sha }} {{ color }}\n"
        mode: "0644"
    - name: who am i
      ansible.builtin.command: id -un
      register: who
    - ansible.builtin.debug:
        msg: "ran as {{ who.stdout }}"
"#,
        0o644,
    );
    let mut vars = BTreeMap::new();
    vars.insert("color".to_string(), "blue".to_string());
    let mut p = plan(vec![ProvisionStep::Ansible(AnsibleStep {
        name: "site".into(),
        playbook: "ansible/site.yml".into(),
        extra_vars: vars,
        extra_args: vec!["-v".into()],
        become_root: true,
        timeout_secs: 600,
    })]);
    p.seal = no_seal();
    rig.provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert_eq!(
        rig.sandbox.read("/etc/ansible-stamp").unwrap(),
        "release-0.1.0 base 0123456789abcdef0123456789abcdef01234567 blue\n"
    );
    let meta = std::fs::metadata(rig.sandbox.path("/etc/ansible-stamp")).unwrap();
    assert_eq!(meta.uid(), 0);
    let log = rig.log();
    assert!(log.contains("ran as root"), "{log}");
    assert!(log.contains("PLAY RECAP"), "{log}");
}

#[tokio::test]
async fn a_failing_ansible_playbook_fails_the_step_with_its_output() {
    let rig = Rig::start();
    rig.write(
        "ansible/bad.yml",
        b"- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: sh -c 'echo broken-config >&2; exit 4'\n",
        0o644,
    );
    let mut p = plan(vec![ProvisionStep::Ansible(AnsibleStep {
        name: "bad".into(),
        playbook: "ansible/bad.yml".into(),
        extra_vars: BTreeMap::new(),
        extra_args: Vec::new(),
        become_root: false,
        timeout_secs: 600,
    })]);
    p.seal = no_seal();
    let err = rig.provision(p).await.expect_err("the playbook fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("provision step `bad` (ansible)"), "{msg}");
    assert!(msg.contains("broken-config"), "{msg}");
}

#[tokio::test]
async fn a_wrong_host_key_is_refused() {
    let rig = Rig::start();
    let other = generate_key();
    let wrong = bakery::provision::host_key::fingerprint(other.public_key());
    let p = plan(Vec::new());

    // Pinned to fingerprints that are not the sandbox's.
    let mut pinned = rig.target.clone();
    pinned.host_key_pins = vec![wrong.clone()];
    let err = rig
        .provision_with(&Rig::provisioner(), &pinned, p.clone())
        .await
        .expect_err("a key outside the pins must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("refused the SSH host key"), "{msg}");
    assert!(msg.contains(&rig.sandbox.host_key_fingerprint), "{msg}");
    assert!(msg.contains(&wrong), "{msg}");

    // A different key recorded earlier in the build.
    let mut known = rig.target.clone();
    known.known_host_key = Some(wrong.clone());
    let err = rig
        .provision_with(&Rig::provisioner(), &known, p.clone())
        .await
        .expect_err("a changed key must be refused");
    assert!(
        format!("{err:#}").contains("refusing a changed host key"),
        "{err:#}"
    );
    assert!(!rig.sandbox.exists("/etc/release"));

    // Pinned to the sandbox's real fingerprints (as read from console output): accepted.
    let mut right = rig.target.clone();
    right.host_key_pins = rig.sandbox.host_key_fingerprints.clone();
    let mut ok = p;
    ok.seal = no_seal();
    let report = rig
        .provision_with(&Rig::provisioner(), &right, ok)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert_eq!(
        report.host_key_fingerprint,
        rig.sandbox.host_key_fingerprint
    );
    assert!(rig.log().contains("matches the console output"));
}

#[tokio::test]
async fn sealing_leaves_no_host_keys_no_machine_id_and_no_build_key() {
    let rig = Rig::start();
    // A stand-in cloud-init that records being cleaned, and some shell history.
    let mut prepare = shell(
        "prepare",
        &[
            "printf '#!/bin/sh\\necho \"$@\" > /var/log/cloud-init-clean-args\\n' > /usr/local/bin/cloud-init",
            "chmod 0755 /usr/local/bin/cloud-init",
            "echo 'ls -la' > /root/.bash_history",
            "echo 'history' > /home/builder/.bash_history",
        ],
    );
    prepare.sudo = true;
    let p = plan(vec![ProvisionStep::Shell(prepare)]);
    assert!(!rig.sandbox.read("/etc/machine-id").unwrap().is_empty());
    let key_line = crate::support::sandbox::public_line(&rig.target.key);
    let key_body = key_line.split_whitespace().nth(1).unwrap().to_string();
    assert!(rig
        .sandbox
        .read("/home/builder/.ssh/authorized_keys")
        .unwrap()
        .contains(&key_body));
    let facts = facts();
    let ctx = rig.ctx(p, facts.clone());
    tokio::time::timeout(HANG_GUARD, Rig::provisioner().provision(&rig.target, &ctx))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));

    let host_keys: Vec<_> = std::fs::read_dir(rig.sandbox.path("/etc/ssh"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(host_keys.is_empty(), "host keys left: {host_keys:?}");
    assert_eq!(rig.sandbox.read("/etc/machine-id").unwrap(), "");
    let keys = rig
        .sandbox
        .read("/home/builder/.ssh/authorized_keys")
        .unwrap();
    assert!(
        !keys.contains(&key_body),
        "build key still authorized: {keys}"
    );
    assert_eq!(
        rig.sandbox.read("/var/log/cloud-init-clean-args").unwrap(),
        "clean --logs\n"
    );
    assert!(!rig.sandbox.exists("/root/.bash_history"));
    assert!(!rig.sandbox.exists("/home/builder/.bash_history"));
    assert!(!rig
        .sandbox
        .exists(&format!("/var/tmp/bakery-{}", facts.build_id)));
    // The release file stays: it is part of the image.
    assert!(rig
        .sandbox
        .read("/etc/release")
        .unwrap()
        .starts_with("release-0.1.0\n"));
}

#[tokio::test]
async fn root_steps_change_the_sandbox_never_the_host() {
    let rig = Rig::start();
    let probe = format!(
        "/etc/bakery-sandbox-probe-{}",
        uuid::Uuid::new_v4().simple()
    );
    let command = format!("echo inside > {probe}");
    let mut step = shell("probe", &[command.as_str(), "touch /root/bakery-probe"]);
    step.sudo = true;
    let mut p = plan(vec![ProvisionStep::Shell(step)]);
    p.seal = no_seal();
    rig.provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert_eq!(rig.sandbox.read(&probe).unwrap(), "inside\n");
    assert!(!Path::new(&probe).exists(), "the host's /etc was written");
    assert!(
        !Path::new("/root/bakery-probe").exists(),
        "the host's /root was written"
    );
    assert!(
        !Path::new("/etc/release").exists()
            || !std::fs::read_to_string("/etc/release")
                .unwrap()
                .starts_with("release-0.1.0")
    );
    // The writes sit in the sandbox's overlay layer.
    let in_upper = rig.sandbox.upper_dir().join(probe.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(in_upper).unwrap(), "inside\n");
}

#[tokio::test]
async fn secrets_are_masked_in_the_streamed_log_and_in_errors() {
    let rig = Rig::start();
    let secret = "s3cr3t-T0KEN-value";
    rig.redactor.add(secret);
    let mut step = shell(
        "uses-token",
        &[
            "echo \"token is $API_TOKEN\"",
            "echo \"stderr has $API_TOKEN too\" >&2",
            "echo \"failing with $API_TOKEN\" >&2; exit 1",
        ],
    );
    step.env.insert("API_TOKEN".into(), secret.into());
    let mut p = plan(vec![ProvisionStep::Shell(step)]);
    p.seal = no_seal();
    let err = rig.provision(p).await.expect_err("the last command fails");
    let log = rig.log();
    assert!(log.contains("token is ***"), "{log}");
    assert!(log.contains("stderr has *** too"), "{log}");
    assert!(!log.contains(secret), "{log}");
    let msg = format!("{err:#}");
    assert!(msg.contains("failing with ***"), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
}

#[tokio::test]
async fn a_failed_verify_check_shows_expected_and_actual() {
    let rig = Rig::start();
    let mut p = plan(Vec::new());
    p.seal = no_seal();
    p.verify = vec![VerifyCheck::File {
        name: "release".into(),
        path: "/etc/release".into(),
        expect_content: Some("release-9.9.9".into()),
    }];
    let err = rig.provision(p.clone()).await.expect_err("content differs");
    let msg = format!("{err:#}");
    assert!(msg.contains("check `release` failed"), "{msg}");
    assert!(msg.contains("expected content \"release-9.9.9\""), "{msg}");
    assert!(msg.contains("got \"release-0.1.0\\nRECIPE=base"), "{msg}");

    p.verify = vec![VerifyCheck::Command {
        name: "kernel".into(),
        command: "echo 5.15".into(),
        sudo: true,
        expect_exit: 0,
        expect_stdout: Some("6.1".into()),
    }];
    let err = rig.provision(p.clone()).await.expect_err("stdout differs");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("expected output \"6.1\", got \"5.15\""),
        "{msg}"
    );

    p.verify = vec![VerifyCheck::Command {
        name: "exit".into(),
        command: "exit 2".into(),
        sudo: false,
        expect_exit: 0,
        expect_stdout: None,
    }];
    let err = rig.provision(p).await.expect_err("exit status differs");
    let msg = format!("{err:#}");
    assert!(msg.contains("expected exit status 0, got 2"), "{msg}");
}

#[tokio::test]
async fn connecting_gives_up_after_its_budget_with_a_useful_error() {
    let rig = Rig::start();
    let short = SshProvisioner::new(ProvisionerOptions {
        connect: ConnectOptions {
            budget: Duration::from_secs(3),
            ..ConnectOptions::default()
        },
        ..ProvisionerOptions::default()
    });

    // Nothing listens on the port.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nowhere = rig.target.clone();
    nowhere.port = closed_port;
    let err = rig
        .provision_with(&short, &nowhere, plan(Vec::new()))
        .await
        .expect_err("nothing to connect to");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "could not connect to builder@127.0.0.1:{closed_port} within 3s"
        )),
        "{msg}"
    );
    assert!(rig.log().contains("waiting for SSH"), "{}", rig.log());

    // A key the builder does not authorize.
    let mut stranger = rig.target.clone();
    stranger.key = generate_key();
    let err = rig
        .provision_with(&short, &stranger, plan(Vec::new()))
        .await
        .expect_err("an unknown key cannot log in");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("refused the build key for user \"builder\""),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_a_running_command() {
    let rig = Arc::new(Rig::start());
    let mut p = plan(vec![ProvisionStep::Shell(shell("wait", &["sleep 600"]))]);
    p.seal = no_seal();
    let ctx = rig.ctx(p, facts());
    let cancel = ctx.cancel.clone();
    let task = {
        let rig = rig.clone();
        tokio::spawn(async move { Rig::provisioner().provision(&rig.target, &ctx).await })
    };
    for _ in 0..1200 {
        if rig.sandbox.processes().iter().any(|(_, _, c)| c == "sleep") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(300), task)
        .await
        .expect("cancelling must not hang")
        .unwrap()
        .expect_err("a cancelled build fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("cancelled while running `sleep 600`"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_that_stops_answering_is_detected_by_keepalives() {
    let rig = Arc::new(Rig::start());
    let mut p = plan(vec![ProvisionStep::Shell(shell("hangs", &["sleep 600"]))]);
    p.seal = no_seal();
    let provisioner = SshProvisioner::new(ProvisionerOptions {
        connect: ConnectOptions {
            budget: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(2),
            keepalive_max: 3,
            ..ConnectOptions::default()
        },
        ..ProvisionerOptions::default()
    });
    let task = {
        let rig = rig.clone();
        tokio::spawn(async move { rig.provision_with(&provisioner, &rig.target, p).await })
    };
    let mut frozen = 0;
    for _ in 0..1200 {
        if rig.sandbox.processes().iter().any(|(_, _, c)| c == "sleep") {
            frozen = rig.sandbox.freeze_ssh_sessions();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(frozen > 0, "the command never started:\n{}", rig.log());
    let err = tokio::time::timeout(Duration::from_secs(300), task)
        .await
        .expect("a silent builder must not hang the build")
        .unwrap()
        .expect_err("a silent builder is an error");
    let msg = format!("{err:#}");
    assert!(msg.contains("provision step `hangs`"), "{msg}");
    assert!(
        msg.contains("connection to the builder was lost while running `sleep 600`"),
        "{msg}"
    );
}
