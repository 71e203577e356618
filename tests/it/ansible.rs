//! The ansible step against the sandboxed builder, told as attacks: a repository's
//! playbook, `ansible.cfg` or `extra_args` trying to run code on bakery's own host, to read
//! one of its files, or to see its environment. Ansible runs on the builder, so every
//! payload below lands there (where it harms nothing) or is refused; the host keeps no
//! trace, and the host's secret shows up neither in the build log nor on the builder.

use std::collections::BTreeMap;
use std::path::Path;

use bakery::plan::model::*;
use bakery::provision::{ProvisionReport, Provisioner};

use crate::ssh::{facts, no_seal, plan, shell, Rig, HANG_GUARD};

const PLAYBOOK: &str = "recipes/web/site.yml";

/// What bakery's host holds that a recipe must never reach: a secret file in a host-only
/// folder, and the place a payload would leave its mark.
struct HostProbe {
    dir: tempfile::TempDir,
    secret: String,
}

impl HostProbe {
    fn plant() -> HostProbe {
        let dir = tempfile::Builder::new()
            .prefix("bakery-host-only-")
            .tempdir()
            .expect("host dir");
        let secret = format!("host-secret-{}", uuid::Uuid::new_v4().simple());
        std::fs::write(dir.path().join("secret.txt"), &secret).unwrap();
        HostProbe { dir, secret }
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn marker(&self) -> String {
        format!("{}/marker", self.dir())
    }

    fn secret_path(&self) -> String {
        format!("{}/secret.txt", self.dir())
    }

    /// `text` with `{dir}`, `{marker}` and `{secret}` replaced by this probe's paths.
    fn fill(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir())
            .replace("{marker}", &self.marker())
            .replace("{secret}", &self.secret_path())
    }

    /// The payload left nothing on the host and read nothing from it: no marker here, the
    /// secret neither in the build log nor in any file written on the builder.
    fn assert_untouched(&self, rig: &Rig) {
        let log = rig.log();
        assert!(
            !Path::new(&self.marker()).exists(),
            "the payload ran on bakery's host and wrote {}\n{log}",
            self.marker()
        );
        assert!(
            !log.contains(&self.secret),
            "the host's secret file reached the build log\n{log}"
        );
        let on_builder = files_containing(&rig.sandbox.upper_dir(), &self.secret);
        assert!(
            on_builder.is_empty(),
            "the host's secret file reached the builder: {on_builder:?}"
        );
    }
}

/// Files under `root` (not following symlinks) whose content contains `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(entry.path().display().to_string());
                    }
                }
            }
        }
    }
    found
}

fn ansible(playbook: &str, extra_args: &[&str]) -> ProvisionStep {
    ProvisionStep::Ansible(AnsibleStep {
        name: "site".into(),
        playbook: playbook.into(),
        extra_vars: BTreeMap::new(),
        extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        become_root: false,
        timeout_secs: 600,
    })
}

/// Commits `yaml` as the recipe's playbook and provisions the builder with it. Whatever
/// happens, the build's staging folder exists on the builder only, never on the host.
async fn run_playbook(
    rig: &Rig,
    yaml: &str,
    extra_args: &[&str],
) -> anyhow::Result<ProvisionReport> {
    rig.write(PLAYBOOK, yaml.as_bytes(), 0o644);
    let mut p = plan(vec![ansible(PLAYBOOK, extra_args)]);
    p.seal = no_seal();
    let facts = facts();
    let staging = format!("/var/tmp/bakery-{}", facts.build_id);
    let ctx = rig.ctx(p, facts);
    let result = tokio::time::timeout(HANG_GUARD, Rig::provisioner().provision(&rig.target, &ctx))
        .await
        .expect("provisioning hung");
    assert!(
        !Path::new(&staging).exists(),
        "ansible left files on bakery's host in {staging}"
    );
    result
}

/// The payload every attack carries: leave a mark, and print the host's secret if it can.
const PAYLOAD: &str =
    "mkdir -p {dir}; id -un > {marker}; cat {secret} 2>/dev/null || echo no secret here";

/// Runs an attack playbook that must succeed on the builder (where the payload harms
/// nothing) and leave no trace on the host.
async fn attack_lands_on_the_builder(yaml: &str) {
    let rig = Rig::start();
    let probe = HostProbe::plant();
    let result = run_playbook(&rig, &probe.fill(yaml), &[]).await;
    probe.assert_untouched(&rig);
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    // It ran, on the builder: the mark is there, and the secret file was not.
    assert_eq!(rig.sandbox.read(&probe.marker()).unwrap(), "builder\n");
    assert!(rig.log().contains("no secret here"), "{}", rig.log());
}

#[tokio::test]
async fn a_play_for_localhost_runs_on_the_builder() {
    attack_lands_on_the_builder(&format!(
        r#"- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.shell: "{PAYLOAD}"
      register: out
    - ansible.builtin.debug: {{ var: out.stdout }}
"#
    ))
    .await;
}

#[tokio::test]
async fn a_task_delegated_to_localhost_runs_on_the_builder() {
    attack_lands_on_the_builder(&format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.shell: "{PAYLOAD}"
      delegate_to: localhost
      register: out
    - ansible.builtin.debug: {{ var: out.stdout }}
"#
    ))
    .await;
}

#[tokio::test]
async fn a_local_connection_in_the_play_runs_on_the_builder() {
    attack_lands_on_the_builder(&format!(
        r#"- hosts: all
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.shell: "{PAYLOAD}"
      register: out
    - ansible.builtin.debug: {{ var: out.stdout }}
"#
    ))
    .await;
}

#[tokio::test]
async fn a_pipe_lookup_runs_on_the_builder() {
    attack_lands_on_the_builder(&format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{{{ lookup('pipe', '{PAYLOAD}') }}}}"
"#
    ))
    .await;
}

#[tokio::test]
async fn a_copy_from_a_host_file_reads_nothing_from_the_host() {
    let rig = Rig::start();
    let probe = HostProbe::plant();
    let yaml = probe.fill(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        src: "{secret}"
        dest: /tmp/leaked
        mode: "0644"
      ignore_errors: true
"#,
    );
    let result = run_playbook(&rig, &yaml, &[]).await;
    probe.assert_untouched(&rig);
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    // `src` is looked up where ansible-playbook runs: on the builder, which has no such file.
    assert!(!rig.sandbox.exists("/tmp/leaked"));
    assert!(
        rig.log().contains("Could not find or access"),
        "{}",
        rig.log()
    );
}

#[tokio::test]
async fn a_vault_password_script_from_a_committed_ansible_cfg_runs_on_the_builder() {
    let rig = Rig::start();
    let probe = HostProbe::plant();
    let script = probe.fill(&format!(
        "#!/bin/sh\n{{ {PAYLOAD}; }} >&2\necho vault-password\n"
    ));
    let cfg = "[defaults]\nvault_password_file = ./vault-pass.sh\n";
    // At the repository root (where ansible-playbook's working directory used to be) and
    // beside the playbook (the folder that goes to the builder).
    for dir in ["", "recipes/web/"] {
        rig.write(&format!("{dir}ansible.cfg"), cfg.as_bytes(), 0o644);
        rig.write(&format!("{dir}vault-pass.sh"), script.as_bytes(), 0o755);
    }
    let result = run_playbook(
        &rig,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: { msg: configured }\n",
        &[],
    )
    .await;
    probe.assert_untouched(&rig);
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert_eq!(rig.sandbox.read(&probe.marker()).unwrap(), "builder\n");
}

#[tokio::test]
async fn extra_args_choosing_a_local_connection_are_refused() {
    let rig = Rig::start();
    let probe = HostProbe::plant();
    let yaml = probe.fill(&format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.shell: \"{PAYLOAD}\"\n"
    ));
    let result = run_playbook(&rig, &yaml, &["-c", "local"]).await;
    probe.assert_untouched(&rig);
    let err = result.expect_err("a connection override is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("`-c`"), "{msg}");
    assert!(msg.contains("connection"), "{msg}");
    // Refused before anything ran, on the builder too.
    assert!(!rig.sandbox.exists(&probe.marker()));
}

/// A variable only bakery's own process has, like its AWS credentials. Not `BAKERY_*`:
/// the `bakery` processes other tests start inherit this process's environment, and
/// their configuration refuses unknown `BAKERY_*` keys.
const BOT_ONLY_VAR: &str = "IT_BOT_ONLY_SECRET";

#[tokio::test]
async fn the_bots_environment_never_reaches_the_playbook() {
    let rig = Rig::start();
    let secret = format!("bot-env-secret-{}", uuid::Uuid::new_v4().simple());
    // The variable's name is this test's own: no other test reads it, and no `bakery`
    // process's configuration sees it.
    std::env::set_var(BOT_ONLY_VAR, &secret);
    let yaml = format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "controller sees [{{{{ lookup('env', '{BOT_ONLY_VAR}') }}}}]"
    - ansible.builtin.command: env
      register: env
    - ansible.builtin.debug: {{ var: env.stdout_lines }}
"#
    );
    let result = run_playbook(&rig, &yaml, &[]).await;
    let log = rig.log();
    assert!(
        !log.contains(&secret),
        "the bot's environment reached the playbook\n{log}"
    );
    result.unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(log.contains("controller sees []"), "{log}");
    assert!(
        files_containing(&rig.sandbox.upper_dir(), &secret).is_empty(),
        "the bot's environment reached the builder"
    );
}

/// Hides ansible-playbook on the builder, and puts `apt_get` (a script, or nothing) in
/// place of the package manager.
fn builder_without_ansible(apt_get: Option<&str>) -> ProvisionStep {
    let mut commands = vec![
        "mv /usr/bin/ansible-playbook /usr/lib/ansible-playbook.hidden".to_string(),
        "rm -f /usr/bin/apt-get".to_string(),
    ];
    if let Some(script) = apt_get {
        commands.push(format!(
            "printf '%s' {} > /usr/local/bin/apt-get",
            bakery::provision::quote::sh_quote(script)
        ));
        commands.push("chmod 0755 /usr/local/bin/apt-get".into());
    }
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    let mut step = shell("no ansible", &refs);
    step.sudo = true;
    ProvisionStep::Shell(step)
}

#[tokio::test]
async fn ansible_core_is_installed_on_a_builder_that_lacks_it() {
    let rig = Rig::start();
    // The package manager's stand-in records what it is asked, and "installs" ansible-core
    // by putting the real ansible-playbook back (the tests have no Debian mirror).
    let apt_get = "#!/bin/sh\necho \"$@\" >> /var/log/apt-get-calls\n\
                   case \" $* \" in *' install '*) mv /usr/lib/ansible-playbook.hidden /usr/bin/ansible-playbook ;; esac\n";
    rig.write(
        PLAYBOOK,
        b"- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: touch /tmp/played\n",
        0o644,
    );
    let mut p = plan(vec![
        builder_without_ansible(Some(apt_get)),
        ansible(PLAYBOOK, &[]),
    ]);
    p.seal = no_seal();
    rig.provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    let calls = rig.sandbox.read("/var/log/apt-get-calls").unwrap();
    assert!(calls.contains("update"), "{calls}");
    assert!(calls.contains("install -y"), "{calls}");
    assert!(calls.contains("ansible-core"), "{calls}");
    assert!(rig.sandbox.exists("/tmp/played"));
    assert!(
        rig.log().contains("installing ansible-core with apt-get"),
        "{}",
        rig.log()
    );
}

#[tokio::test]
async fn a_builder_without_ansible_or_a_package_manager_fails_with_what_to_install() {
    let rig = Rig::start();
    rig.write(
        PLAYBOOK,
        b"- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: touch /tmp/played\n",
        0o644,
    );
    let mut p = plan(vec![builder_without_ansible(None), ansible(PLAYBOOK, &[])]);
    p.seal = no_seal();
    let err = rig
        .provision(p)
        .await
        .expect_err("nothing can run the playbook");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("ansible-playbook is not installed on the builder"),
        "{msg}"
    );
    assert!(msg.contains("ansible-core"), "{msg}");
    assert!(!rig.sandbox.exists("/tmp/played"));
}

/// Every uploaded playbook tree and vars file under the builder's staging folders.
fn ansible_leftovers(rig: &Rig) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir(rig.sandbox.path("/var/tmp"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("bakery-") {
            continue;
        }
        for inner in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let inner = inner.file_name().to_string_lossy().to_string();
            if inner.contains("ansible") {
                left.push(format!("/var/tmp/{name}/{inner}"));
            }
        }
    }
    left
}

#[tokio::test]
async fn the_uploaded_playbook_is_removed_after_success_and_after_failure() {
    let rig = Rig::start();
    rig.write("recipes/web/files/motd", b"hi\n", 0o644);
    let ok = run_playbook(
        &rig,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.copy: { src: files/motd, dest: /tmp/motd }\n",
        &[],
    )
    .await;
    ok.unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    // Files beside the playbook went with it.
    assert_eq!(rig.sandbox.read("/tmp/motd").unwrap(), "hi\n");
    assert_eq!(ansible_leftovers(&rig), Vec::<String>::new());

    let failed = run_playbook(
        &rig,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: 'false'\n",
        &[],
    )
    .await;
    assert!(failed.is_err());
    assert_eq!(ansible_leftovers(&rig), Vec::<String>::new());
}

#[tokio::test]
async fn a_symlink_in_the_playbook_folder_to_a_host_file_goes_as_a_link_not_its_content() {
    let rig = Rig::start();
    let probe = HostProbe::plant();
    std::fs::create_dir_all(rig.repo().join("recipes/web/files")).unwrap();
    std::os::unix::fs::symlink(
        probe.secret_path(),
        rig.repo().join("recipes/web/files/leak"),
    )
    .unwrap();
    let result = run_playbook(
        &rig,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.copy: { src: files/leak, dest: /tmp/leaked }\n      ignore_errors: true\n",
        &[],
    )
    .await;
    probe.assert_untouched(&rig);
    result.unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert!(!rig.sandbox.exists("/tmp/leaked"));
}
