//! What is inside an image: the package inventory (`model.rs`), Debian's version ordering
//! (`version.rs`), and the difference between two releases' inventories (`diff.rs`) that
//! release notes show. Pure.

pub mod diff;
pub mod model;
pub mod version;

pub use diff::{diff, InventoryDiff};
pub use model::{Collected, Inventory, OsRelease, Package, PackageManager};
