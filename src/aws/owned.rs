//! Finds a build's own image by name, for create calls whose answer was lost (crash
//! adoption) or that may have left something behind (failure cleanup).
//!
//! Image names are shared by every build of a version, and by other stores and
//! repositories, so a name alone never identifies what this build created: the image must
//! also carry this build's `bakery:build-id`, which bakery sets at creation
//! (TagSpecifications on CreateImage and CopyImage). A create call that AWS answered with
//! an error created nothing: its pending journal entry is settled ([`settle_refused`]).
//! Only reads (DescribeImages) and writes the journal.
//!
//! The one place a build's image is looked up by name: crash adoption and failure cleanup
//! (`find_pending_image`), and the check that a kept copy still exists (`find_build_image`).

use aws_sdk_ec2::types::Filter;

use super::error::{aws_error, SdkResultExt};
use super::policy;
use super::resource::ResourceKind;
use super::session::{AwsSession, Target};
use super::tags::role;
use super::ResourceJournal;
use crate::plan::model::tag_keys;

/// The image named `name` in `target` that build `build_id` created, if any.
pub async fn find_build_image(
    session: &AwsSession,
    target: &Target,
    name: &str,
    build_id: &str,
) -> anyhow::Result<Option<String>> {
    let ec2 = session.ec2(target)?;
    let out = policy::call(
        &format!("look up image {name:?} of build {build_id} in {target}"),
        || async {
            ec2.describe_images()
                .owners("self")
                .filters(Filter::builder().name("name").values(name).build())
                .filters(super::tags::tagged(tag_keys::BUILD_ID, build_id))
                .send()
                .await
                .aws()
        },
    )
    .await?;
    // Checked again on the answer: an endpoint that ignored the tag filter must not make
    // another build's image ours.
    Ok(out
        .images()
        .iter()
        .find(|i| super::tags::value(i.tags(), tag_keys::BUILD_ID) == Some(build_id))
        .and_then(|i| i.image_id())
        .map(str::to_string))
}

/// An image of this build found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundImage {
    pub id: String,
    /// [`super::tags::role::FINAL`] or [`super::tags::role::INTERMEDIATE`].
    pub role: &'static str,
}

/// The image a create call whose answer was lost made, if this build made one: looked up
/// by the name its pending journal entry (`lookup`) recorded, else the name its role
/// implies (`final_name` for a copy, the intermediate name otherwise), and this build's id.
pub async fn find_pending_image(
    session: &AwsSession,
    target: &Target,
    lookup: &serde_json::Value,
    final_name: &str,
    build_id: &str,
) -> anyhow::Result<Option<FoundImage>> {
    let role = match lookup.get("role").and_then(|r| r.as_str()) {
        Some(r) if r == role::FINAL => role::FINAL,
        _ => role::INTERMEDIATE,
    };
    let name = match lookup.get("name").and_then(|n| n.as_str()) {
        Some(n) => n.to_string(),
        None if role == role::FINAL => final_name.to_string(),
        None => super::image::intermediate_name(final_name, build_id),
    };
    Ok(find_build_image(session, target, &name, build_id)
        .await?
        .map(|id| FoundImage { id, role }))
}

/// Settles the pending journal entry of a create call that failed with an error answer
/// from AWS (a code, not a timeout or a lost connection): nothing was created. A call
/// whose answer was lost stays pending, to be looked up by name and build id.
pub async fn settle_refused(
    journal: &dyn ResourceJournal,
    kind: ResourceKind,
    target: &Target,
    err: &anyhow::Error,
) -> anyhow::Result<()> {
    match aws_error(err) {
        Some(e) if e.code.is_some() && !e.transient => journal.not_created(kind, target).await,
        _ => Ok(()),
    }
}
