//! The ansible step, run on the builder the way Packer's ansible-local runs it: the
//! playbook's folder (its roles, files, templates, group_vars and `ansible.cfg` beside it)
//! is uploaded, every file sha256-checked, to a private folder in the build's staging
//! directory; ansible-core is installed if the builder lacks it; then
//! `ansible-playbook -c local -i localhost,` runs there over SSH, with the extra vars in a
//! JSON file, its output streamed into the build log. The uploaded folder is removed
//! afterwards, also when the playbook fails.
//!
//! May touch: the builder, over the session's SSH connection; on bakery's host it only
//! reads the playbook's folder in the checkout. Nothing of ansible runs on bakery's host,
//! so lookups, `delegate_to: localhost`, `connection: local`, `copy: src=`, vault scripts
//! and a committed `ansible.cfg` all act on the builder, and bakery's environment never
//! reaches them (see docs/SECURITY.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::shell::{wrap_command, CLIENT_GRACE, TIMEOUT_STATUS};
use super::{ansible_core, Session};
use crate::plan::model::AnsibleStep;
use crate::provision::communicator::{tail_suffix, ExecError, RemoteCommand};
use crate::provision::quote::{env_exports, sh_quote};
use crate::provision::repo_path::resolve_in_repo;
use crate::provision::upload::{run_script, upload, upload_entries, walk_tree, Source, TreeEntry};
use crate::provision::ProvisionPlan;
use crate::recipe::ansible_args::check_extra_args;

/// The variables every playbook gets; bakery's own names win over the recipe's.
pub fn extra_vars(step: &AnsibleStep, plan: &ProvisionPlan) -> BTreeMap<String, String> {
    let mut vars = step.extra_vars.clone();
    vars.insert("bakery_version".into(), plan.version.clone());
    vars.insert("bakery_recipe".into(), plan.recipe.clone());
    vars.insert("bakery_git_sha".into(), plan.git_sha.clone());
    vars.insert("bakery_build_id".into(), plan.build_id.clone());
    vars
}

/// The local folder that goes to the builder (the playbook's own folder) and the
/// playbook's name in it.
pub fn playbook_tree(repo_root: &Path, playbook: &Path) -> anyhow::Result<(PathBuf, String)> {
    let local = resolve_in_repo(repo_root, playbook)?;
    let dir = local
        .parent()
        .with_context(|| format!("{} has no folder", playbook.display()))?
        .to_path_buf();
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a valid UTF-8 file name", playbook.display()))?
        .to_string();
    Ok((dir, name))
}

/// The playbook folder's entries, without version control data.
fn tree_entries(dir: &Path) -> anyhow::Result<Vec<TreeEntry>> {
    let is_git = |rel: &str| rel == ".git" || rel.starts_with(".git/");
    Ok(walk_tree(dir)?
        .into_iter()
        .filter(|e| match e {
            TreeEntry::Dir { rel, .. }
            | TreeEntry::File { rel, .. }
            | TreeEntry::Symlink { rel, .. } => !is_git(rel),
        })
        .collect())
}

/// The command line run on the builder, in the uploaded folder `work/playbook`.
pub fn playbook_command(step: &AnsibleStep, work: &str, playbook: &str) -> String {
    let mut args: Vec<String> = vec![
        "ansible-playbook".into(),
        "-c".into(),
        "local".into(),
        "-i".into(),
        "localhost,".into(),
    ];
    if step.become_root {
        args.push("--become".into());
    }
    args.extend(step.extra_args.iter().cloned());
    // Last, so bakery's own variables win over any `-e` in extra_args.
    args.push("--extra-vars".into());
    args.push(format!("@{work}/extra-vars.json"));
    args.push(playbook.into());
    let quoted: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    format!(
        "cd {} && exec {}",
        sh_quote(&format!("{work}/playbook")),
        quoted.join(" ")
    )
}

/// ansible's settings for the run: plain output, failures on stderr (so an error can quote
/// them), its temporary files inside the step's folder.
fn ansible_env(work: &str) -> BTreeMap<String, String> {
    [
        ("ANSIBLE_NOCOLOR", "1".to_string()),
        ("ANSIBLE_FORCE_COLOR", "0".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED", "0".into()),
        ("ANSIBLE_DISPLAY_FAILED_STDERR", "1".into()),
        ("ANSIBLE_PYTHON_INTERPRETER", "auto_silent".into()),
        ("ANSIBLE_LOCAL_TEMP", format!("{work}/local-tmp")),
        ("ANSIBLE_REMOTE_TEMP", format!("{work}/remote-tmp")),
        ("PYTHONUNBUFFERED", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub async fn run(s: &mut Session, step: &AnsibleStep, plan: &ProvisionPlan) -> anyhow::Result<()> {
    let name = step.name.as_str();
    if let Err((_, why)) = check_extra_args(&step.extra_args) {
        anyhow::bail!("extra_args: {why}; {}", why.hint());
    }
    let (dir, playbook) = playbook_tree(&s.repo_root, &step.playbook)?;
    let entries = tree_entries(&dir)?;
    ansible_core::ensure(s, name).await?;

    let work = s.stage_path("ansible");
    let result = upload_and_play(s, step, plan, &dir, &entries, &work, &playbook).await;

    // The uploaded folder goes, whatever happened; root may own files the playbook made.
    let sudo = step.become_root && !s.sudo().is_empty();
    let cleanup = run_script(
        &s.comm,
        name,
        &format!("removing {work}"),
        sudo,
        format!("rm -rf {}\n", sh_quote(&work)),
        &s.log,
        &CancellationToken::new(),
    )
    .await;
    match (result, cleanup) {
        (Ok(()), Ok(_)) => Ok(()),
        (Ok(()), Err(e)) => Err(e.context("removing the uploaded playbook from the builder")),
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(c)) => {
            s.log.info(
                name,
                format!("could not remove {work} from the builder: {c:#}"),
            );
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload_and_play(
    s: &mut Session,
    step: &AnsibleStep,
    plan: &ProvisionPlan,
    dir: &Path,
    entries: &[TreeEntry],
    work: &str,
    playbook: &str,
) -> anyhow::Result<()> {
    let name = step.name.as_str();
    let folder = step
        .playbook
        .parent()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into());
    let n = upload_entries(
        &s.comm,
        name,
        dir,
        entries,
        &format!("{work}/playbook"),
        &s.log,
        &s.cancel,
    )
    .await
    .with_context(|| format!("uploading {folder} to the builder"))?;
    s.log.info(
        name,
        format!("uploaded {n} files from {folder} to {work}/playbook (sha256 checked)"),
    );
    let vars = serde_json::to_vec(&extra_vars(step, plan))?;
    upload(
        &s.comm,
        name,
        Source::Bytes(Bytes::from(vars)),
        &format!("{work}/extra-vars.json"),
        0o600,
        &s.log,
        &s.cancel,
    )
    .await
    .context("uploading the extra vars")?;

    let limit = Duration::from_secs(step.timeout_secs.max(1));
    let display = format!(
        "ansible-playbook {} (on the builder, connection local)",
        step.playbook.display()
    );
    s.log.info(name, format!("$ {display}"));
    let exports = env_exports(&ansible_env(work))?;
    let cmd = RemoteCommand::new(
        display,
        wrap_command(&playbook_command(step, work, playbook), &exports, "", limit),
        limit + CLIENT_GRACE,
    );
    let shown = step.playbook.display();
    match s.comm.exec(name, &cmd, &s.log, &s.cancel).await {
        Ok(out) if out.success() => Ok(()),
        Ok(out) if out.exit_status == TIMEOUT_STATUS && out.elapsed >= limit => anyhow::bail!(
            "ansible-playbook {shown} did not finish within the step's timeout of {limit:?} and was killed{}",
            tail_suffix(&out.stderr_tail)
        ),
        Ok(out) => anyhow::bail!(
            "ansible-playbook {shown} failed (exit status {}){}",
            out.exit_status,
            tail_suffix(&out.stderr_tail)
        ),
        Err(ExecError::TimedOut { .. }) => anyhow::bail!(
            "ansible-playbook {shown} did not finish within the step's timeout of {limit:?}"
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(become_root: bool, extra_args: &[&str]) -> AnsibleStep {
        AnsibleStep {
            name: "site".into(),
            playbook: "recipes/web/site.yml".into(),
            extra_vars: BTreeMap::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            become_root,
            timeout_secs: 60,
        }
    }

    #[test]
    fn runs_locally_with_the_vars_file_last() {
        assert_eq!(
            playbook_command(
                &step(true, &["--tags", "a b"]),
                "/var/tmp/b/001-ansible",
                "site.yml"
            ),
            "cd /var/tmp/b/001-ansible/playbook && exec ansible-playbook -c local -i localhost, \
             --become --tags 'a b' --extra-vars @/var/tmp/b/001-ansible/extra-vars.json site.yml"
        );
    }

    #[test]
    fn the_playbook_folder_goes_without_git_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::fs::create_dir_all(root.join("roles/web")).unwrap();
        std::fs::write(root.join("site.yml"), "- hosts: all\n").unwrap();
        let (folder, name) = playbook_tree(root, Path::new("site.yml")).unwrap();
        assert_eq!(name, "site.yml");
        let rels: Vec<String> = tree_entries(&folder)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                TreeEntry::Dir { rel, .. }
                | TreeEntry::File { rel, .. }
                | TreeEntry::Symlink { rel, .. } => rel,
            })
            .collect();
        assert!(rels.contains(&"roles/web".to_string()), "{rels:?}");
        assert!(rels.contains(&"site.yml".to_string()), "{rels:?}");
        assert!(!rels.iter().any(|r| r.starts_with(".git")), "{rels:?}");
    }
}
