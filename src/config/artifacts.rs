//! `[artifacts]`: where the release job's qemu builders put their disk images, and which
//! of them go to the GitHub Release as assets. Without `dir`, the server builds no
//! `[qemu]` builder (a recipe never chooses where files land on the bot).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// GitHub's own limit on one release asset is 2 GiB; the upload is held in memory.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// The artifact directory: `<dir>/<recipe>/<recipe>-<version>/<recipe>-<version>.<format>`
    /// with a `.sha256` file beside each. Unset: release tags build no `[qemu]` builder.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Artifacts up to this size (bytes) are uploaded to the GitHub Release as assets;
    /// bigger ones are listed with where they are stored. 0 uploads none.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Where `dir` is served (e.g. `https://images.example.com/artifacts`): an artifact not
    /// uploaded is listed as `<base_url>/<recipe>/<recipe>-<version>/<file>`; unset, as its
    /// path on the bot.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Use KVM when `/dev/kvm` works (the build logs which it uses); `false` always runs
    /// software emulation (TCG), for hosts whose KVM answers but cannot run a guest.
    #[serde(default = "default_kvm")]
    pub kvm: bool,
}

fn default_kvm() -> bool {
    true
}

fn default_max_upload_bytes() -> u64 {
    DEFAULT_MAX_UPLOAD_BYTES
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        ArtifactsConfig {
            dir: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            base_url: None,
            kvm: true,
        }
    }
}
