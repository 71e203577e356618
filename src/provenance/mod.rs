//! Signed provenance of a release: an in-toto statement with a SLSA Provenance v1
//! predicate (`statement.rs`) about every image and the SBOM of a build, signed as a DSSE
//! envelope (`dsse.rs`) with the bot's Ed25519 key (`key.rs`, the only file that holds
//! it), its digest tagged on the images and the envelope attached to the GitHub Release
//! (`attach.rs`), and the checks `bakery verify` makes (`verify.rs`). Everything but
//! `attach.rs` is pure.

pub(crate) mod attach;
pub mod dsse;
pub(crate) mod key;
pub mod statement;
pub mod verify;

pub use key::{KeyError, ProvenanceKey, PublicKey};
