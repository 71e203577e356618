//! The image registry: what bakery released, where, and in which state.
//!
//! The cloud's tags are the truth. Every final image bakery released carries its recipe,
//! version, git SHA, repository, build id and source image as tags; the registry reads
//! them across every account and region the operator configured or a build used, and the
//! store only fills in what the cloud no longer shows (a deregistered image).
//!
//! - [`channel_plan`]: what a change to the channels would move, and what it refuses;
//! - [`channels`]: `channels.toml`, the channels and revocations as code;
//! - [`channels_source`]: where a repository keeps them (`channels.toml` or `[channels]` in
//!   `bakery.toml`), read from a checkout or a git tree;
//! - [`lifecycle`]: what the lifecycle rules retire, and what they must spare;
//! - [`retire`]: a run of the lifecycle rules (read the default branch, plan, apply);
//! - [`lifecycle_text`]: what `bakery lifecycle` prints and the job log says;
//! - [`model`]: the typed entries (`RegistryImage`, `ImageState`) and the query;
//! - [`outdated`]: images built on a revoked or superseded parent (`--outdated`);
//! - [`parameter_names`]: the Parameter Store names of a release's versions and channels;
//! - [`reconcile`]: what makes the cloud match the default branch's channels file;
//! - [`scope`]: which accounts and regions to look in;
//! - [`lookup`]: reading the cloud (DescribeImages, read-only) and the store;
//! - [`table`]: the text table `bakery images` prints;
//! - [`api`]: `GET /api/images`, for operators.

pub mod api;
pub mod channel_plan;
pub mod channels;
pub mod channels_source;
pub mod lifecycle;
pub mod lifecycle_text;
pub mod lookup;
pub mod model;
pub mod outdated;
pub mod parameter_names;
pub mod reconcile;
pub mod retire;
pub mod scope;
pub mod table;

pub use lookup::lookup;
pub use model::ImageQuery;
