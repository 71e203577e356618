//! The reports a finished job leaves on GitHub, composed from the rendering functions
//! and the reporting calls: the release's commit comment and GitHub Release, the
//! failure comment, and the answer to a comment command.

use std::path::Path;

use anyhow::Context;

use super::render::{self, BuildFailure, BuildSummary};
use crate::database::Store;
use crate::github::api::client::is_own_comment;
use crate::github::api::reporter::{GitHubReporter, ReleaseAsset, ReleaseRef};
use crate::github::webhook::commands::{parse_command, Command};
use crate::inventory::history::{package_report, release_sbom, RecipePackages};
use crate::inventory::sbom;
use crate::provenance::attach::{self, Signed};
use crate::redact::Redactor;

/// What [`publish_release`] left on GitHub.
#[derive(Debug, Clone)]
pub struct PublishedRelease {
    pub comment_url: String,
    pub release: ReleaseRef,
    pub notes: crate::github::git::release_notes::ReleaseNotes,
    /// Each built recipe's package changes, as the notes show them.
    pub packages: Vec<RecipePackages>,
    /// The SBOMs attached to the release, one per recipe with an inventory, then the
    /// signed provenance of each recipe (when a signing key is configured), then the disk
    /// images small enough to upload.
    pub assets: Vec<ReleaseAsset>,
}

/// After a successful release build: the commit comment with the image table, and the
/// GitHub Release for the tag with the notes since the previous tag (created, or updated
/// on a rerun), each recipe's package changes since that tag included (inventories read
/// from `store`), and each recipe's SBOM and signed provenance (`provenance`) attached to
/// it as assets. `workspace` is the
/// job's checkout (it holds the tags).
pub async fn publish_release(
    reporter: &GitHubReporter,
    store: &dyn Store,
    workspace: &Path,
    tag: &str,
    patterns: &[String],
    summary: &BuildSummary,
    provenance: &[Signed],
) -> anyhow::Result<PublishedRelease> {
    publish_release_with_files(
        reporter,
        store,
        workspace,
        tag,
        patterns,
        summary,
        provenance,
        &[],
    )
    .await
}

/// A qemu builder's artifact to attach to the release: its file name there and where the
/// file is on the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub name: String,
    pub path: std::path::PathBuf,
}

/// The media type of an uploaded disk image.
pub const DISK_IMAGE_MEDIA_TYPE: &str = "application/octet-stream";

/// [`publish_release`], with the qemu builders' disk images in the comment and the notes
/// (`summary.disk_builds`), and `files` (those small enough) uploaded as assets after the
/// SBOMs and provenance.
#[allow(clippy::too_many_arguments)]
pub async fn publish_release_with_files(
    reporter: &GitHubReporter,
    store: &dyn Store,
    workspace: &Path,
    tag: &str,
    patterns: &[String],
    summary: &BuildSummary,
    provenance: &[Signed],
    files: &[ReleaseFile],
) -> anyhow::Result<PublishedRelease> {
    let notes = {
        let (workspace, tag, patterns) =
            (workspace.to_path_buf(), tag.to_string(), patterns.to_vec());
        tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open(&workspace)
                .with_context(|| format!("cannot open the checkout {}", workspace.display()))?;
            crate::github::git::release_notes::compute(&repo, &tag, &patterns)
        })
        .await
        .context("release notes task died")??
    };
    let mut packages = Vec::new();
    for r in &summary.recipes {
        let report = package_report(store, &r.recipe, tag, notes.previous_tag.as_deref()).await?;
        packages.push(RecipePackages {
            recipe: r.recipe.clone(),
            report,
        });
    }
    let comment_url = reporter
        .comment_on_commit(
            &summary.git_sha,
            &render::release_comment(summary, &packages),
        )
        .await?;
    let body = render::release_notes_with_disk_images(
        &notes,
        &summary.images,
        &packages,
        &summary.disk_builds,
    );
    let release = reporter
        .upsert_release(tag, &summary.git_sha, tag, &body)
        .await?;
    let mut assets = Vec::new();
    for r in &summary.recipes {
        if let Some((name, bytes)) = release_sbom(store, &r.recipe, tag).await? {
            let asset = reporter
                .upload_release_asset(&release, &name, sbom::MEDIA_TYPE, bytes.into())
                .await?;
            assets.push(asset);
        }
    }
    for signed in provenance {
        let asset = reporter
            .upload_release_asset(
                &release,
                &signed.asset_name,
                attach::MEDIA_TYPE,
                signed.envelope.clone().into(),
            )
            .await?;
        assets.push(asset);
    }
    for f in files {
        let bytes = tokio::fs::read(&f.path)
            .await
            .with_context(|| format!("cannot read {} to upload it", f.path.display()))?;
        let asset = reporter
            .upload_release_asset(&release, &f.name, DISK_IMAGE_MEDIA_TYPE, bytes.into())
            .await?;
        assets.push(asset);
    }
    Ok(PublishedRelease {
        comment_url,
        release,
        notes,
        packages,
        assets,
    })
}

/// After a failed build: the failure comment on the commit, secrets masked.
pub async fn publish_failure(
    reporter: &GitHubReporter,
    failure: &BuildFailure,
    redactor: &Redactor,
) -> anyhow::Result<String> {
    reporter
        .comment_on_commit(
            &failure.git_sha,
            &render::failure_comment(failure, redactor),
        )
        .await
}

/// What to do about a pull request comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandDecision {
    /// Not a command, or bakery's own comment.
    Ignore,
    /// Answer with this comment (the help text).
    Reply(String),
    /// Carry the command out.
    Run(Command),
    /// The author may not do this; answer with this comment.
    Refuse(String),
}

/// Decides what a comment by `author` asks for. Builds (which run with the repository's
/// cloud credentials, for fork pull requests too) and cancels need write permission,
/// checked through the API; validation does not.
pub async fn decide_command(
    reporter: &GitHubReporter,
    author: &str,
    body: &str,
) -> anyhow::Result<CommandDecision> {
    let bot = reporter.bot_login().await?;
    if is_own_comment(author, &bot) {
        return Ok(CommandDecision::Ignore);
    }
    let Some(command) = parse_command(body) else {
        return Ok(CommandDecision::Ignore);
    };
    match command {
        Command::Help { problem } => {
            Ok(CommandDecision::Reply(render::help_text(problem.as_ref())))
        }
        Command::Validate => Ok(CommandDecision::Run(Command::Validate)),
        Command::Build { .. } | Command::Cancel => {
            let permission = reporter.user_permission(author).await?;
            if permission.can_build() {
                Ok(CommandDecision::Run(command))
            } else {
                let verb = match command {
                    Command::Cancel => "/bakery cancel",
                    _ => "/bakery build",
                };
                Ok(CommandDecision::Refuse(format!(
                    "@{author}, `{verb}` needs write permission on this repository (you have \
                     {}). Ask a maintainer to comment it.\n",
                    permission.permission
                )))
            }
        }
    }
}
