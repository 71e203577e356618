//! What is inside an image: the package inventory (`model.rs`), read on the builder before
//! sealing by `provision/steps/inventory.rs` and parsed here (`parse.rs`), Debian's version
//! ordering (`version.rs`), and the difference between two releases' inventories
//! (`diff.rs`) that release notes show, per recipe against the previous release
//! (`history.rs`, which reads the store). Everything else here is pure.

pub(crate) mod diff;
pub(crate) mod history;
pub(crate) mod model;
pub(crate) mod parse;
pub mod sbom;
pub(crate) mod version;

pub use diff::{diff, InventoryDiff};
pub use model::{Collected, Inventory, OsRelease, Package, PackageManager};
