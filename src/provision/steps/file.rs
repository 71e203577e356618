//! The file step: a file or a directory tree from the repository, uploaded to a staging
//! path, checked, then moved into place (with sudo where the SSH user cannot write).
//!
//! A directory's contents end up in `destination` (created if missing); a file becomes
//! `destination`.

use anyhow::Context;

use super::Session;
use crate::plan::model::FileStep;
use crate::provision::quote::sh_quote;
use crate::provision::repo_path::resolve_in_repo;
use crate::provision::upload::{run_script, upload, upload_tree, Source};

pub async fn run(s: &mut Session, step: &FileStep) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let name = step.name.as_str();
    if !step.destination.starts_with('/') {
        anyhow::bail!(
            "destination {:?} is not an absolute path; give the full path on the builder",
            step.destination
        );
    }
    if let Some(owner) = &step.owner {
        let valid = !owner.is_empty()
            && owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
        if !valid {
            anyhow::bail!("owner {owner:?} is not a user or user:group name");
        }
    }
    let local = resolve_in_repo(&s.repo_root, &step.source)?;
    let meta =
        std::fs::metadata(&local).with_context(|| format!("cannot stat {}", local.display()))?;
    let sudo = s.sudo();

    if meta.is_dir() {
        let stage = s.stage_path("tree");
        let n = upload_tree(&s.comm, name, &local, &stage, &s.log, &s.cancel).await?;
        s.log.info(
            name,
            format!(
                "uploaded {n} files from {} (sha256 checked)",
                step.source.display()
            ),
        );
        let script = place_tree_script(&stage, &step.destination, step.owner.as_deref(), sudo);
        run_script(
            &s.comm,
            name,
            &format!("placing files in {}", step.destination),
            false,
            script,
            &s.log,
            &s.cancel,
        )
        .await?;
    } else {
        let mode = step.mode.unwrap_or(meta.permissions().mode() & 0o7777);
        let base = step
            .source
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let stage = s.stage_path(base);
        let digest = upload(
            &s.comm,
            name,
            Source::File(local.clone()),
            &stage,
            mode,
            &s.log,
            &s.cancel,
        )
        .await?;
        s.log.info(
            name,
            format!(
                "uploaded {} ({} bytes, sha256 {digest})",
                step.source.display(),
                meta.len()
            ),
        );
        let script = place_file_script(&stage, &step.destination, step.owner.as_deref(), sudo);
        run_script(
            &s.comm,
            name,
            &format!("placing {}", step.destination),
            false,
            script,
            &s.log,
            &s.cancel,
        )
        .await?;
    }
    s.log.info(name, format!("placed at {}", step.destination));
    Ok(())
}

/// Moves a staged file to `dest`. Without an owner, a destination the SSH user can write
/// is written as that user; anything else goes through sudo and ends up owned by root (or
/// by `owner`).
pub fn place_file_script(stage: &str, dest: &str, owner: Option<&str>, sudo: &str) -> String {
    let (src, dst) = (sh_quote(stage), sh_quote(dest));
    let chown_to = sh_quote(owner.unwrap_or("root:root"));
    let as_user = if owner.is_none() {
        format!(
            "mkdir -p \"$d\" 2>/dev/null || true\n\
             if [ -w \"$d\" ] && {{ [ ! -e {dst} ] || [ -w {dst} ]; }}; then\n  \
             mv -f {src} {dst}\n  exit 0\nfi\n"
        )
    } else {
        String::new()
    };
    format!(
        "set -e\nd=$(dirname {dst})\n{as_user}\
         {sudo}mkdir -p \"$d\"\n\
         {sudo}chown {chown_to} {src}\n\
         {sudo}mv -f {src} {dst}\n"
    )
}

/// Copies a staged tree's contents into `dest`, then removes the staged copy.
pub fn place_tree_script(stage: &str, dest: &str, owner: Option<&str>, sudo: &str) -> String {
    let (src, dst) = (sh_quote(stage), sh_quote(dest));
    let chown_to = sh_quote(owner.unwrap_or("root:root"));
    let as_user = if owner.is_none() {
        format!(
            "mkdir -p {dst} 2>/dev/null || true\n\
             if [ -d {dst} ] && [ -w {dst} ]; then\n  \
             cp -a {src}/. {dst}/\n  rm -rf {src}\n  exit 0\nfi\n"
        )
    } else {
        String::new()
    };
    format!(
        "set -e\n{as_user}\
         {sudo}chown -R {chown_to} {src}\n\
         {sudo}mkdir -p {dst}\n\
         {sudo}cp -a {src}/. {dst}/\n\
         {sudo}rm -rf {src}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    #[test]
    fn places_a_file_as_the_user_where_writable() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        std::fs::write(&stage, "x").unwrap();
        let dest = dir.path().join("new/dir/file");
        // The sudo branch must not be reached: it would exit with 97.
        let script = place_file_script(
            stage.to_str().unwrap(),
            dest.to_str().unwrap(),
            None,
            "exit 97; ",
        );
        let out = run_sh(&script);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "x");
        assert!(!stage.exists());
    }

    #[test]
    fn places_a_tree_and_removes_the_staged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        std::fs::create_dir_all(stage.join("sub")).unwrap();
        std::fs::write(stage.join("sub/a"), "a").unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join("kept"), "k").unwrap();
        let script = place_tree_script(
            stage.to_str().unwrap(),
            dest.to_str().unwrap(),
            None,
            "exit 97; ",
        );
        let out = run_sh(&script);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(dest.join("sub/a")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(dest.join("kept")).unwrap(), "k");
        assert!(!stage.exists());
    }

    #[test]
    fn an_owner_always_goes_through_sudo() {
        let script = place_file_script("/stage/f", "/home/u/f", Some("app:app"), "sudo -n ");
        assert!(script.contains("sudo -n chown app:app /stage/f"));
        assert!(!script.contains("[ -w"));
    }
}
