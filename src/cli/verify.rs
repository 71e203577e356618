//! `bakery verify`: checks a released image against its signed provenance before anyone
//! launches it: the envelope's signature with the public key, the image's tags against
//! the statement, the SBOM file against the digest the statement signs. Reads the files
//! it is given and the images' tags (DescribeImages, with the caller's AWS credentials);
//! changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::aws::error::SdkResultExt;
use crate::aws::{policy, tags, AwsSession, AwsSettings, Target};
use crate::provenance::statement::ImageSubject;
use crate::provenance::verify::{self, Opened};
use crate::provenance::PublicKey;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// `ami-…` (that image), or `recipe@version` (every image of the release in the
    /// caller's account).
    pub image: String,
    /// The public key, PEM (`openssl pkey -in provenance.pem -pubout`).
    #[arg(long)]
    pub key: PathBuf,
    /// The release's `<recipe>-<version>.intoto.jsonl` asset.
    #[arg(long)]
    pub provenance: PathBuf,
    /// The release's `<recipe>-<version>.cdx.json` asset.
    #[arg(long)]
    pub sbom: Option<PathBuf>,
    /// Another AWS endpoint (an EC2-compatible API).
    #[arg(long, env = "BAKERY_AWS__ENDPOINT_URL", hide = true)]
    pub endpoint_url: Option<String>,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read the public key {}", args.key.display()))?;
    let key = PublicKey::from_pem(&pem)?;
    let envelope = std::fs::read(&args.provenance)
        .with_context(|| format!("cannot read {}", args.provenance.display()))?;
    let mut failures: Vec<String> = vec![];

    let opened = match verify::open(&envelope, &key) {
        Ok(o) => o,
        Err(e) => {
            println!("FAILED signature: {e}");
            println!("NOT verified");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "ok     signature: {} signed by key {}",
        opened.release(),
        key.key_id()
    );

    let images = match which_images(&opened, &args.image) {
        Ok(i) => i,
        Err(e) => {
            println!("FAILED {e}");
            println!("NOT verified");
            return Ok(ExitCode::FAILURE);
        }
    };

    let home_region = images
        .first()
        .map(|i| i.region.clone())
        .unwrap_or_else(|| "us-east-1".into());
    let session = AwsSession::connect(
        AwsSettings {
            endpoint_url: args.endpoint_url.clone(),
            ..AwsSettings::default()
        },
        &home_region,
    )
    .await?;
    let mut checked = 0;
    for image in &images {
        if image.account != session.home_account() {
            println!(
                "skip   {} in {}/{}: another account's image (verify it there)",
                image.image_id, image.account, image.region
            );
            continue;
        }
        checked += 1;
        match image_tags(&session, image).await.with_context(|| {
            format!(
                "cannot read the tags of {} in {}/{}",
                image.image_id, image.account, image.region
            )
        })? {
            None => failures.push(format!(
                "{} does not exist in {}/{}",
                image.image_id, image.account, image.region
            )),
            Some(found) => {
                let problems = opened.check_tags(&found);
                if problems.is_empty() {
                    println!(
                        "ok     tags: {} in {}/{} carries {} = {}",
                        image.image_id,
                        image.account,
                        image.region,
                        tags::PROVENANCE,
                        opened.digest
                    );
                }
                failures.extend(problems.into_iter().map(|p| {
                    format!(
                        "tags: {} in {}/{}: {p}",
                        image.image_id, image.account, image.region
                    )
                }));
            }
        }
    }
    if checked == 0 {
        failures.push(format!(
            "no image of this provenance is in account {}: nothing was checked",
            session.home_account()
        ));
    }

    match (&args.sbom, opened.statement.sbom()) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            match opened.check_sbom(&bytes) {
                Ok(()) => println!("ok     sbom: {} matches", path.display()),
                Err(e) => failures.push(format!("sbom: {e}")),
            }
        }
        (None, Some(subject)) => println!(
            "note   sbom: not checked; pass --sbom with the release's {}",
            subject.name
        ),
        (None, None) => {}
    }

    for f in &failures {
        println!("FAILED {f}");
    }
    if failures.is_empty() {
        println!("verified");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("NOT verified: {} problem(s)", failures.len());
        Ok(ExitCode::FAILURE)
    }
}

/// The images `what` (`ami-…` or `recipe@version`) asks to check.
fn which_images(opened: &Opened, what: &str) -> Result<Vec<ImageSubject>, verify::VerifyError> {
    if what.starts_with("ami-") {
        Ok(vec![opened.image(what)?])
    } else {
        opened.expect_release(what)?;
        Ok(opened.statement.images())
    }
}

/// The tags of `image`, or `None` when it does not exist.
async fn image_tags(
    session: &AwsSession,
    image: &ImageSubject,
) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
    let ec2 = session.ec2(&Target {
        account: image.account.clone(),
        region: image.region.clone(),
    })?;
    let out = policy::call(&format!("describe {}", image.image_id), || async {
        ec2.describe_images()
            .image_ids(&image.image_id)
            .send()
            .await
            .aws()
    })
    .await;
    let out = match out {
        Ok(o) => o,
        Err(e) if crate::aws::error::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(out
        .images()
        .iter()
        .find(|i| i.image_id() == Some(image.image_id.as_str()))
        .map(|i| tags::to_map(i.tags())))
}
