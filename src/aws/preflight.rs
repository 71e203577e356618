//! Checks before anything is launched: they cost nothing and say exactly what is wrong.
//!
//! - every target account's role can be assumed (see [`assume_roles`]);
//! - the builder's subnet exists (or the default VPC does), and maps public IPs when
//!   bakery connects over one; the subnets a launch may try (see [`super::network`]);
//! - the source image resolves;
//! - the image name is free in every target account and region (from the lookup that
//!   also finds an earlier release, see [`super::release::lookup`]);
//! - every KMS key exists and is enabled, and each copy's key and `builder.kms_key` is a
//!   customer managed symmetric encryption key (no AWS managed, asymmetric or HMAC key);
//!   a key named twice in one account and region is described once ([`KeyAnswers`]);
//! - the key the builder's volume is encrypted under ([`BuilderKey`]): `builder.kms_key`,
//!   or, when every copy stays in the builder's account, the builder region's copy key;
//!   with neither, the intermediate (under the source's key, or the region's default EBS
//!   key) can be shared with the other accounts the plan copies into;
//! - a source derived from an AWS Marketplace image (it carries a product code) is not
//!   copied to other accounts, which EC2 refuses.

use anyhow::Context;
use aws_sdk_ec2::types::{Filter, ImageState, ProductCodeValues};
use futures::future::join_all;

use super::error::{AwsError, SdkResultExt};
use super::release::Lookup;
use super::session::{AwsSession, Target};
use super::source_filter;
use super::{policy, tags, EngineCtx};
use crate::plan::model::{tag_keys, AccountTarget, BuildPlan, SourcePlan};

/// The image the builder boots from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceImage {
    pub id: String,
    pub name: Option<String>,
    pub root_device_name: Option<String>,
    /// The KMS keys its encrypted snapshots are under (`alias/aws/ebs` when EC2 names
    /// none). The builder's volume, and so the intermediate, stays under them.
    #[serde(default)]
    pub encrypted_with: Vec<String>,
    /// Its AWS Marketplace product codes: EC2 copies no image derived from a Marketplace
    /// image into another account.
    #[serde(default)]
    pub marketplace_codes: Vec<String>,
}

/// The source image was revoked (`bakery:revoked`): a build refuses to start on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "source image {image_id}{} is revoked: {reason}. Nothing is built on a revoked parent: \
     point the recipe's source at another release",
    release.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
)]
pub struct RevokedParent {
    pub image_id: String,
    /// `recipe@version`, from the image's tags.
    pub release: Option<String>,
    pub reason: String,
}

/// Refuses a source image tagged `bakery:revoked`, naming the reason.
pub fn refuse_revoked(image: &aws_sdk_ec2::types::Image) -> Result<(), RevokedParent> {
    let Some(reason) = tags::value(image.tags(), crate::registry::model::REVOKED_TAG) else {
        return Ok(());
    };
    let recipe = tags::value(image.tags(), tag_keys::RECIPE);
    let version = tags::value(image.tags(), tag_keys::IMAGE_VERSION);
    Err(RevokedParent {
        image_id: image.image_id().unwrap_or_default().to_string(),
        release: recipe.zip(version).map(|(r, v)| format!("{r}@{v}")),
        reason: reason.to_string(),
    })
}

/// A copy target with its KMS key resolved to an ARN.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedCopy {
    pub target: Target,
    /// The role used for this account; `None` for the home account.
    pub account: Option<AccountTarget>,
    /// The key as the plan names it.
    pub kms_key_requested: Option<String>,
    /// The key's ARN; `None` uses the account's default EBS key.
    pub kms_key_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preflight {
    pub source: SourceImage,
    pub copies: Vec<ResolvedCopy>,
    /// The subnets the builder may launch into, one per zone, in the order they are
    /// tried. Empty (a journal from before they were chosen): EC2 chooses.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// The [`BuilderKey`] resolved to its ARN: the builder's root volume, and so the
    /// intermediate image, is encrypted under it.
    #[serde(default)]
    pub builder_kms_key_arn: Option<String>,
}

/// Every account the plan copies to, once.
pub fn target_accounts(plan: &BuildPlan) -> Vec<AccountTarget> {
    let mut accounts: Vec<AccountTarget> = plan
        .distribute
        .copies
        .iter()
        .filter_map(|c| c.account.clone())
        .collect();
    accounts.sort();
    accounts.dedup();
    accounts
}

/// Assumes every target account's role (session name `bakery-<build id>`), all at once.
pub async fn assume_roles(
    session: &AwsSession,
    plan: &BuildPlan,
    build_id: &str,
) -> anyhow::Result<()> {
    let session_name = format!("bakery-{build_id}");
    let accounts = target_accounts(plan);
    let results = join_all(
        accounts
            .iter()
            .map(|a| session.assume_role(a, &session_name)),
    )
    .await;
    collect_errors("cannot reach every target account", results).map(|_| ())
}

/// Every copy target, resolved to an account id.
pub fn copy_targets(
    session: &AwsSession,
    plan: &BuildPlan,
) -> Vec<(Target, Option<AccountTarget>)> {
    plan.distribute
        .copies
        .iter()
        .map(|c| {
            (
                Target {
                    account: session.account_of(c.account.as_ref()),
                    region: c.region.clone(),
                },
                c.account.clone(),
            )
        })
        .collect()
}

/// Runs the checks. Every failure is reported, not just the first. `lookup`: the release
/// lookup, with the targets where the image name is held by another image, and the filter
/// source's images when it asked for them in the builder region.
pub async fn run(ctx: EngineCtx<'_>, lookup: &Lookup) -> anyhow::Result<Preflight> {
    let taken = &lookup.taken;
    let plan = ctx.plan;
    anyhow::ensure!(
        !plan.distribute.copies.is_empty(),
        "the plan has no copy targets: add at least one region to the recipe's distribute targets"
    );
    let builder = ctx.builder_target();
    let targets = copy_targets(ctx.session, plan);
    let answers = KeyAnswers::default();
    let answers = &answers;

    let source = async {
        match source_from_lookup(lookup, &builder, &plan.source) {
            Some(found) => found,
            None => resolve_source(ctx.session, &builder, &plan.source, plan.repo.as_deref()).await,
        }
    };
    let keys = join_all(
        plan.distribute
            .copies
            .iter()
            .zip(&targets)
            .map(|(c, (t, _))| resolve_copy_key(ctx.session, answers, t, c.kms_key_id.as_deref())),
    );
    let other_accounts: Vec<String> = targets
        .iter()
        .map(|(t, _)| t.account.clone())
        .filter(|a| a != &builder.account)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let builder_key = builder_volume_key(plan, &builder, &targets, &other_accounts);
    let ebs = async {
        match builder_key {
            // An explicit key overrides the region's default EBS key.
            Some(_) => Ok(()),
            None => default_ebs_encryption(ctx.session, answers, &builder, &other_accounts).await,
        }
    };
    let builder_key = async {
        let resolved = resolve_copy_key(
            ctx.session,
            answers,
            &builder,
            builder_key.map(BuilderKey::name),
        )
        .await;
        match builder_key {
            Some(BuilderKey::Recipe(_)) => {
                resolved.context("builder.kms_key cannot encrypt the builder's volume")
            }
            // The same key's check as a copy key reports what is wrong with it, once.
            Some(BuilderKey::HomeCopy(_)) => Ok(resolved.unwrap_or(None)),
            None => resolved,
        }
    };
    let subnets = Box::pin(super::network::launch_subnets(ctx.session, &builder, plan));
    let (source, keys, ebs, subnets, builder_key) =
        tokio::join!(source, keys, ebs, subnets, builder_key);
    // A revoked parent is a refusal of its own, not one problem among others.
    if source
        .as_ref()
        .err()
        .is_some_and(|e| e.downcast_ref::<RevokedParent>().is_some())
    {
        return Err(source.expect_err("checked"));
    }

    let mut errors: Vec<String> = vec![];
    if let Err(e) = &source {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = &ebs {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = &subnets {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = &builder_key {
        errors.push(format!("{e:#}"));
    }
    errors.extend(taken.iter().map(|t| t.to_string()));
    errors.extend(
        keys.iter()
            .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))),
    );
    if let Ok(source) = &source {
        if !other_accounts.is_empty() && !source.marketplace_codes.is_empty() {
            errors.push(format!(
                "source image {} in {builder} is derived from an AWS Marketplace image (product \
                 code {}): EC2 cannot copy it into {}. Build from an image without a \
                 Marketplace product code, or rebuild from the Marketplace image in each \
                 target account",
                source.id,
                source.marketplace_codes.join(", "),
                other_accounts.join(", ")
            ));
        }
        if !other_accounts.is_empty() && plan.builder.kms_key.is_none() {
            for key in &source.encrypted_with {
                if let Err(e) =
                    shareable_source_key(ctx.session, &builder, &source.id, key, &other_accounts)
                        .await
                {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("pre-flight checks failed:\n  - {}", errors.join("\n  - "));
    }
    let copies = targets
        .into_iter()
        .zip(plan.distribute.copies.iter())
        .zip(keys)
        .map(|(((target, account), copy), key)| ResolvedCopy {
            target,
            account,
            kms_key_requested: copy.kms_key_id.clone(),
            kms_key_arn: key.expect("errors were handled above"),
        })
        .collect();
    Ok(Preflight {
        source: source.expect("errors were handled above"),
        copies,
        subnets: subnets.expect("errors were handled above"),
        builder_kms_key_arn: builder_key.expect("errors were handled above"),
    })
}

/// The key the builder's root volume, and so the intermediate image, is encrypted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuilderKey<'a> {
    /// The recipe's `builder.kms_key`.
    Recipe(&'a str),
    /// The key of the encrypted copy in the builder's own account and region, when every
    /// copy stays in the builder's account: the intermediate is then never unencrypted,
    /// the region's default EBS encryption does not matter (so it is not read), and no
    /// other account needs a grant on the key.
    HomeCopy(&'a str),
}

impl<'a> BuilderKey<'a> {
    pub fn name(self) -> &'a str {
        match self {
            BuilderKey::Recipe(k) | BuilderKey::HomeCopy(k) => k,
        }
    }
}

/// Which key encrypts the builder's volume, if any (see [`BuilderKey`]). Without one the
/// volume is encrypted as the source and the region's defaults say.
pub fn builder_volume_key<'a>(
    plan: &'a BuildPlan,
    builder: &Target,
    targets: &[(Target, Option<AccountTarget>)],
    other_accounts: &[String],
) -> Option<BuilderKey<'a>> {
    if let Some(k) = plan.builder.kms_key.as_deref() {
        return Some(BuilderKey::Recipe(k));
    }
    if !plan.distribute.encrypted || !other_accounts.is_empty() {
        return None;
    }
    plan.distribute
        .copies
        .iter()
        .zip(targets)
        .find(|(_, (t, _))| t == builder)
        .and_then(|(c, _)| c.kms_key_id.as_deref())
        .map(BuilderKey::HomeCopy)
}

/// With EBS encryption by default on in the builder region, the builder's root volume,
/// and so the intermediate image, is encrypted with the region's default key. An image
/// under the AWS managed key `aws/ebs` cannot be shared with another account, so a plan
/// that copies into one fails here, before anything is launched, with the fix named. A
/// customer managed default key must be one bakery may use (see [`resolve_kms_key`]).
async fn default_ebs_encryption(
    session: &AwsSession,
    answers: &KeyAnswers,
    builder: &Target,
    other_accounts: &[String],
) -> anyhow::Result<()> {
    let ec2 = session.ec2(builder)?;
    let on = policy::call(
        &format!("read EBS encryption by default in {builder}"),
        || async { ec2.get_ebs_encryption_by_default().send().await.aws() },
    )
    .await
    .with_context(|| {
        format!("cannot read EBS encryption by default in {builder}: the builder needs ec2:GetEbsEncryptionByDefault")
    })?
    .ebs_encryption_by_default()
    .unwrap_or(false);
    if !on {
        return Ok(());
    }
    let key = policy::call(
        &format!("read the default EBS key in {builder}"),
        || async { ec2.get_ebs_default_kms_key_id().send().await.aws() },
    )
    .await
    .with_context(|| {
        format!("cannot read the default EBS key in {builder}: the builder needs ec2:GetEbsDefaultKmsKeyId")
    })?
    .kms_key_id()
    .unwrap_or("alias/aws/ebs")
    .to_string();
    if key.ends_with("alias/aws/ebs") {
        anyhow::ensure!(
            other_accounts.is_empty(),
            "EBS encryption by default is on in {builder} with the AWS managed key aws/ebs: the \
             intermediate image would be encrypted with it, and an image under aws/ebs cannot be \
             shared with {}. Set builder.kms_key in the recipe to a customer managed key aliased \
             alias/ami* (the builder's volume is then encrypted under it), or set the region's \
             default EBS key to one (aws ec2 modify-ebs-default-kms-key-id), or turn encryption \
             by default off",
            other_accounts.join(", ")
        );
        return Ok(());
    }
    resolve_kms_key(session, answers, builder, Some(&key))
        .await
        .with_context(|| {
            format!("EBS encryption by default is on in {builder}: the intermediate image would be encrypted with {key}; or set builder.kms_key in the recipe to a key bakery may use")
        })?;
    Ok(())
}

/// The source's snapshots are encrypted with `key`, and the intermediate will be too: it
/// can go to other accounts only if the key is a customer managed key bakery may use.
async fn shareable_source_key(
    session: &AwsSession,
    builder: &Target,
    source: &str,
    key: &str,
    other_accounts: &[String],
) -> anyhow::Result<()> {
    let fix = "set builder.kms_key in the recipe to a customer managed key aliased alias/ami* \
               (the builder's volume is then re-encrypted under it), or copy the source image \
               under such a key (aws ec2 copy-image --encrypted --kms-key-id) and build from \
               the copy";
    let aws_managed = format!(
        "source image {source} in {builder} is encrypted with the AWS managed key aws/ebs: the \
         intermediate image would be too, and cannot be shared with {}; {fix}",
        other_accounts.join(", ")
    );
    anyhow::ensure!(!key.ends_with("alias/aws/ebs"), "{aws_managed}");
    let kms = session.kms(builder)?;
    let meta = policy::call(&format!("describe KMS key {key} in {builder}"), || async {
        kms.describe_key().key_id(key).send().await.aws()
    })
    .await
    .with_context(|| {
        format!(
            "source image {source} in {builder} is encrypted with KMS key {key}, which bakery \
             cannot use (the builder policy allows keys aliased alias/ami*); {fix}"
        )
    })?;
    let manager = meta.key_metadata().and_then(|m| m.key_manager());
    anyhow::ensure!(
        manager != Some(&aws_sdk_kms::types::KeyManagerType::Aws),
        "{aws_managed}"
    );
    Ok(())
}

fn collect_errors<T>(what: &str, results: Vec<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let mut ok = vec![];
    let mut errors = vec![];
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        anyhow::bail!("{what}:\n  - {}", errors.join("\n  - "))
    }
}

/// What pre-flight keeps of the source image EC2 described.
pub(crate) fn source_of(i: &aws_sdk_ec2::types::Image) -> SourceImage {
    SourceImage {
        id: i.image_id().unwrap_or_default().to_string(),
        name: i.name().map(str::to_string),
        root_device_name: i.root_device_name().map(str::to_string),
        encrypted_with: i
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs())
            .filter(|e| e.encrypted() == Some(true))
            .map(|e| e.kms_key_id().unwrap_or("alias/aws/ebs").to_string())
            .collect(),
        marketplace_codes: i
            .product_codes()
            .iter()
            .filter(|p| p.product_code_type() == Some(&ProductCodeValues::Marketplace))
            .filter_map(|p| p.product_code_id().map(str::to_string))
            .collect(),
    }
}

/// The source from the builder region's release lookup, which asked for a filter source in
/// the same DescribeImages ([`super::source_filter`]); `None` when it did not.
fn source_from_lookup(
    lookup: &Lookup,
    builder: &Target,
    source: &SourcePlan,
) -> Option<anyhow::Result<SourceImage>> {
    let images = lookup.source_images.as_ref()?;
    let SourcePlan::Filter {
        owners,
        name,
        most_recent,
        ..
    } = source
    else {
        return None;
    };
    Some((|| {
        let image = source_filter::choose(images.clone(), builder, owners, name, *most_recent)?;
        refuse_revoked(&image)?;
        Ok(source_of(&image))
    })())
}

/// Finds the builder's source image in the builder region of the home account. A recipe
/// source is looked up among `repo`'s released images only (all repositories' when
/// `None`: a command-line build without `--repository`).
pub async fn resolve_source(
    session: &AwsSession,
    builder: &Target,
    source: &SourcePlan,
    repo: Option<&str>,
) -> anyhow::Result<SourceImage> {
    let ec2 = session.ec2(builder)?;
    let to_source = source_of;
    match source {
        SourcePlan::AmiId { id } => {
            let out = policy::call(&format!("describe source image {id}"), || async {
                ec2.describe_images().image_ids(id).send().await.aws()
            })
            .await;
            let image = match out {
                Ok(out) => out.images().first().cloned(),
                Err(e) if super::error::is_not_found(&e) => None,
                Err(e) => return Err(e),
            };
            let image = image.with_context(|| {
                format!("source image {id} not found in {builder}: check the id and the region")
            })?;
            anyhow::ensure!(
                image.state() == Some(&ImageState::Available),
                "source image {id} in {builder} is {}, not available",
                image
                    .state()
                    .map(|s| s.as_str())
                    .unwrap_or("in an unknown state")
            );
            refuse_revoked(&image)?;
            Ok(to_source(&image))
        }
        SourcePlan::Filter {
            owners,
            name,
            architecture,
            most_recent,
        } => {
            let out = policy::call(&format!("find source image {name:?}"), || async {
                let mut req = ec2
                    .describe_images()
                    .set_owners(Some(owners.clone()))
                    .filters(Filter::builder().name("name").values(name).build())
                    .filters(Filter::builder().name("state").values("available").build());
                if let Some(arch) = architecture {
                    req = req.filters(Filter::builder().name("architecture").values(arch).build());
                }
                req.send().await.aws()
            })
            .await?;
            let image =
                source_filter::choose(out.images().to_vec(), builder, owners, name, *most_recent)?;
            refuse_revoked(&image)?;
            Ok(to_source(&image))
        }
        SourcePlan::Recipe { recipe, version } => {
            let out = policy::call(
                &format!("find released image of recipe {recipe}"),
                || async {
                    // Deprecated (and so revoked) releases too, as EC2 shows them to
                    // their owner: a revoked parent is refused by name, not missed.
                    let mut req = ec2
                        .describe_images()
                        .owners("self")
                        .include_deprecated(true)
                        .filters(tags::tagged(tag_keys::RECIPE, recipe))
                        .filters(tags::has_tag(tags::RELEASED))
                        .filters(Filter::builder().name("state").values("available").build());
                    // Only this repository's images: another repository's `base` is not ours.
                    if let Some(repo) = repo {
                        req = req.filters(tags::tagged(tag_keys::REPO, repo));
                    }
                    if version != "latest" {
                        req = req.filters(tags::tagged(tag_keys::IMAGE_VERSION, version));
                    }
                    req.send().await.aws()
                },
            )
            .await?;
            // A pull request's image is never a source, whatever else it is tagged with
            // (checked here: EC2 filters cannot exclude a tag).
            let mut images: Vec<_> = out
                .images()
                .iter()
                .filter(|i| tags::value(i.tags(), tag_keys::EPHEMERAL).is_none())
                .cloned()
                .collect();
            images.sort_by(|a, b| a.creation_date().cmp(&b.creation_date()));
            let image = images.last().with_context(|| {
                format!(
                    "no released image of recipe {recipe} version {version} in {builder}: release it first (or copy it to {})",
                    builder.region
                )
            })?;
            refuse_revoked(image)?;
            Ok(to_source(image))
        }
    }
}

/// Why a key cannot encrypt EBS copies that other accounts use: an AWS managed key can
/// be neither shared nor granted, and EBS encrypts only under symmetric encryption keys
/// (CopyImage checks the key asynchronously: the copy would fail later).
pub fn encryption_key_fit(meta: &aws_sdk_kms::types::KeyMetadata) -> Result<(), String> {
    use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyUsageType};
    if meta.key_manager() == Some(&KeyManagerType::Aws) {
        return Err(
            "it is an AWS managed key, which cannot be shared with or granted to other accounts"
                .into(),
        );
    }
    if let Some(spec) = meta.key_spec() {
        if spec != &KeySpec::SymmetricDefault {
            return Err(format!("its key spec is {}, not SYMMETRIC_DEFAULT (asymmetric and HMAC keys cannot encrypt EBS)", spec.as_str()));
        }
    }
    if let Some(usage) = meta.key_usage() {
        if usage != &KeyUsageType::EncryptDecrypt {
            return Err(format!(
                "its key usage is {}, not ENCRYPT_DECRYPT",
                usage.as_str()
            ));
        }
    }
    Ok(())
}

/// Resolves a KMS key to its ARN and checks it is enabled. `None` (the account's default
/// EBS key) needs no check.
pub async fn resolve_kms_key(
    session: &AwsSession,
    answers: &KeyAnswers,
    target: &Target,
    key: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let meta = answers.describe_enabled(session, target, key).await?;
    Ok(Some(
        meta.arn()
            .with_context(|| format!("KMS key {key} in {target} has no ARN"))?
            .to_string(),
    ))
}

/// [`resolve_kms_key`] for the key a copy is encrypted under, which must also be a
/// customer managed symmetric encryption key ([`encryption_key_fit`]).
pub async fn resolve_copy_key(
    session: &AwsSession,
    answers: &KeyAnswers,
    target: &Target,
    key: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let meta = answers.describe_enabled(session, target, key).await?;
    let arn = meta
        .arn()
        .with_context(|| format!("KMS key {key} in {target} has no ARN"))?;
    if let Err(why) = encryption_key_fit(&meta) {
        anyhow::bail!(
            "KMS key {key} ({arn}) in {target} cannot encrypt image copies: {why}; name a \
             customer managed symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage \
             ENCRYPT_DECRYPT), e.g. one aliased alias/ami"
        );
    }
    Ok(Some(arn.to_string()))
}

/// The DescribeKey answers of one pre-flight, by account, region and key as the plan
/// names it: a key named twice in one place (a copy's key that is also `builder.kms_key`,
/// or the region's default EBS key) is described once, and each use checks that answer.
#[derive(Default)]
pub struct KeyAnswers {
    #[allow(clippy::type_complexity)]
    answers: std::sync::Mutex<
        std::collections::BTreeMap<
            (Target, String),
            std::sync::Arc<tokio::sync::OnceCell<Result<aws_sdk_kms::types::KeyMetadata, String>>>,
        >,
    >,
}

impl KeyAnswers {
    /// [`describe_enabled`], once per account, region and key; a failure is told to every
    /// use of the key, as its message.
    async fn describe_enabled(
        &self,
        session: &AwsSession,
        target: &Target,
        key: &str,
    ) -> anyhow::Result<aws_sdk_kms::types::KeyMetadata> {
        let cell = self
            .answers
            .lock()
            .expect("the key answers' lock is never poisoned")
            .entry((target.clone(), key.to_string()))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            describe_enabled(session, target, key)
                .await
                .map_err(|e| format!("{e:#}"))
        })
        .await
        .clone()
        .map_err(anyhow::Error::msg)
    }
}

/// DescribeKey, and the key must be enabled.
async fn describe_enabled(
    session: &AwsSession,
    target: &Target,
    key: &str,
) -> anyhow::Result<aws_sdk_kms::types::KeyMetadata> {
    let kms = session.kms(target)?;
    let out = policy::call(&format!("describe KMS key {key} in {target}"), || async {
        kms.describe_key().key_id(key).send().await.aws()
    })
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if super::error::aws_error(&e).is_some_and(AwsError::is_not_found) => {
            anyhow::bail!(
                "KMS key {key} not found in {target}: create it there or fix the recipe's kms key for this target"
            )
        }
        Err(e) => {
            return Err(e.context(format!(
                "cannot use KMS key {key} in {target}: the role needs kms:DescribeKey on it"
            )))
        }
    };
    let meta = out
        .key_metadata()
        .with_context(|| format!("KMS DescribeKey for {key} in {target} returned no metadata"))?
        .clone();
    let state = meta.key_state().map(|s| s.as_str().to_string());
    anyhow::ensure!(
        meta.enabled() && state.as_deref().unwrap_or("Enabled") == "Enabled",
        "KMS key {key} in {target} is {}: enable it, or pick another key",
        state.unwrap_or_else(|| "disabled".into())
    );
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Image, Tag};

    fn image(tags: &[(&str, &str)]) -> Image {
        let mut b = Image::builder().image_id("ami-parent");
        for (k, v) in tags {
            b = b.tags(Tag::builder().key(*k).value(*v).build());
        }
        b.build()
    }

    #[test]
    fn a_revoked_parent_is_refused_with_its_reason() {
        assert_eq!(
            refuse_revoked(&image(&[(tag_keys::RECIPE, "base")])),
            Ok(())
        );
        let err = refuse_revoked(&image(&[
            (tag_keys::RECIPE, "base"),
            (tag_keys::IMAGE_VERSION, "release-0.1.0"),
            (
                crate::registry::model::REVOKED_TAG,
                "CVE-2026-12345: openssl",
            ),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            RevokedParent {
                image_id: "ami-parent".into(),
                release: Some("base@release-0.1.0".into()),
                reason: "CVE-2026-12345: openssl".into(),
            }
        );
        assert!(err.to_string().contains("CVE-2026-12345: openssl"), "{err}");
    }
}
