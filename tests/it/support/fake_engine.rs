//! The fast tier's image engine: an `ImageEngine` that touches no cloud. It records every
//! build it was asked for and answers as the AWS engine does, as a job sees it: the steps
//! in the build's log in order, then a manifest with one encrypted copy per target of the
//! plan (the home account's for copies without an account), or the failing step's error
//! under a `StepFailed` context, after the cleanup line.
//!
//! Touches only its own memory.

use std::sync::Mutex;

use async_trait::async_trait;
use bakery::build::manifest::ManifestCopy;
use bakery::build::{
    BuildOutcome, BuildRequest, Cancelled, EngineRun, HandedOver, ImageEngine, Manifest, Step,
    StepFailed,
};
use bakery::plan::model::{BuildFacts, BuildPlan};

/// The account whose credentials run the builder (moto's, as in the stories).
pub const HOME_ACCOUNT: &str = "123456789012";
/// The image every fake build starts from.
pub const SOURCE_AMI: &str = "ami-0c0ffee0c0ffee000";

/// One image the fake made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeImage {
    pub recipe: String,
    pub account: String,
    pub region: String,
    pub ami: String,
}

/// One build the fake was asked for.
#[derive(Debug, Clone)]
pub struct Asked {
    pub recipe: String,
    pub version: String,
    pub git_sha: String,
    pub ephemeral: bool,
    pub job_id: Option<i64>,
    /// `(account, region)` of every copy the plan asks for.
    pub targets: Vec<(String, String)>,
}

/// The error of a step the test made fail, as AWS would answer it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EngineFailure {
    pub code: String,
    pub message: String,
}

#[derive(Default)]
struct Inner {
    asked: Vec<Asked>,
    made: Vec<FakeImage>,
    fail: Option<(Step, EngineFailure)>,
    next_image: u64,
}

#[derive(Default)]
pub struct FakeEngine {
    inner: Mutex<Inner>,
}

impl FakeEngine {
    /// Every build from now on fails in `step` with `failure`.
    pub fn fail_in(&self, step: Step, failure: EngineFailure) {
        self.inner.lock().unwrap().fail = Some((step, failure));
    }

    /// The builds asked for, oldest first.
    pub fn asked(&self) -> Vec<Asked> {
        self.inner.lock().unwrap().asked.clone()
    }

    /// The images made, in the order made.
    pub fn images(&self) -> Vec<FakeImage> {
        self.inner.lock().unwrap().made.clone()
    }

    fn targets(plan: &BuildPlan) -> Vec<(String, String)> {
        plan.distribute
            .copies
            .iter()
            .map(|c| {
                let account = c
                    .account
                    .as_ref()
                    .map(|a| a.account_id.clone())
                    .unwrap_or_else(|| HOME_ACCOUNT.to_string());
                (account, c.region.clone())
            })
            .collect()
    }
}

#[async_trait]
impl ImageEngine for FakeEngine {
    async fn build(&self, request: BuildRequest) -> EngineRun {
        let BuildRequest { plan, log, options } = request;
        let targets = Self::targets(&plan);
        let fail = {
            let mut inner = self.inner.lock().unwrap();
            inner.asked.push(Asked {
                recipe: plan.recipe.clone(),
                version: plan.version.clone(),
                git_sha: plan.git_sha.clone(),
                ephemeral: plan.image.ephemeral,
                job_id: options.job_id,
                targets: targets.clone(),
            });
            inner.fail.clone()
        };
        let build_id = uuid::Uuid::now_v7().to_string();
        log.info(
            Step::Credentials.as_str(),
            format!(
                "build {build_id}: {} {} at {}",
                plan.recipe, plan.version, plan.git_sha
            ),
        );
        for step in Step::ALL {
            if options.hand_over.is_cancelled() {
                return stopped(anyhow::Error::new(HandedOver));
            }
            if options.cancel.is_cancelled() {
                return stopped(anyhow::Error::new(Cancelled));
            }
            log.info(step.as_str(), format!("{} (no cloud)", step.as_str()));
            if let Some((failing, failure)) = &fail {
                if *failing == step {
                    let err = anyhow::Error::new(failure.clone()).context(StepFailed {
                        step: step.as_str(),
                    });
                    log.info(
                        "cleanup",
                        format!("build failed: {err:#}; deleting everything it created"),
                    );
                    return stopped(err);
                }
            }
        }
        let mut copies = vec![];
        {
            let mut inner = self.inner.lock().unwrap();
            for ((account, region), planned) in targets.iter().zip(&plan.distribute.copies) {
                inner.next_image += 1;
                let n = inner.next_image;
                let ami = format!("ami-0fa4e{n:012x}");
                inner.made.push(FakeImage {
                    recipe: plan.recipe.clone(),
                    account: account.clone(),
                    region: region.clone(),
                    ami: ami.clone(),
                });
                copies.push(ManifestCopy {
                    account: account.clone(),
                    region: region.clone(),
                    ami,
                    encrypted: plan.distribute.encrypted,
                    kms_key_id: planned.kms_key_id.clone(),
                    snapshot_ids: vec![format!("snap-0fa4e{n:012x}")],
                });
            }
        }
        let facts = BuildFacts {
            build_id: build_id.clone(),
            source_ami: SOURCE_AMI.to_string(),
        };
        let manifest = Manifest::from_copies(&plan, &facts, copies);
        log.info(
            Step::Manifest.as_str(),
            format!(
                "build {build_id} succeeded: {}",
                manifest.builds[0].artifact_id
            ),
        );
        EngineRun {
            result: Ok(BuildOutcome::Built {
                build_id,
                manifest,
                resumed: false,
            }),
            session: None,
        }
    }
}

fn stopped(err: anyhow::Error) -> EngineRun {
    EngineRun {
        result: Err(err),
        session: None,
    }
}
