//! What the provisioner runs on a builder, whichever builder it is (an EC2 instance or a
//! local QEMU virtual machine): the recipe's steps, the release stamp, the verify checks and
//! the seal, with the build's identity. Pure data, made from a builder's plan; touches
//! nothing.

use serde::{Deserialize, Serialize};

use crate::plan::model::{BuildFacts, BuildPlan, ProvisionStep, SealPlan, VerifyCheck};

/// How the sealed image gets fresh SSH host keys on its first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealRule {
    /// The cloud's first-boot agent (cloud-init on EC2) makes them: sealing only removes.
    Cloud,
    /// A disk image run anywhere (VMware, VirtualBox, Proxmox): sealing also installs a
    /// first-boot unit that makes missing host keys before sshd starts.
    FirstBootHostKeys,
}

/// What the provisioner does with the builder once it is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// Leaves it running: the EC2 engine stops the instance through the API.
    Leave,
    /// Asks the guest to power off (a local VM: its disk is exported once it is off).
    PowerOff,
}

/// Everything the provisioner needs to know about the build, builder-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionPlan {
    pub recipe: String,
    pub version: String,
    pub git_sha: String,
    pub build_id: String,
    pub provision: Vec<ProvisionStep>,
    /// Where the release file goes (absolute).
    pub stamp_path: String,
    /// The release file's content, exactly as it is written.
    pub release_file: String,
    pub verify: Vec<VerifyCheck>,
    pub seal: SealPlan,
    pub seal_rule: SealRule,
    pub finish: Finish,
}

impl ProvisionPlan {
    /// The EC2 builder's provisioning: the plan's steps, its release file with the
    /// resolved source AMI, sealed for cloud-init.
    pub fn for_ec2(plan: &BuildPlan, facts: &BuildFacts) -> ProvisionPlan {
        ProvisionPlan {
            recipe: plan.recipe.clone(),
            version: plan.version.clone(),
            git_sha: plan.git_sha.clone(),
            build_id: facts.build_id.clone(),
            provision: plan.provision.clone(),
            stamp_path: plan.stamp.path.clone(),
            release_file: plan.release_file(facts),
            verify: plan.verify.clone(),
            seal: plan.seal.clone(),
            seal_rule: SealRule::Cloud,
            finish: Finish::Leave,
        }
    }
}
