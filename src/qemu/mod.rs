//! The qemu builder: a recipe's `[qemu]` section built on the bot's own machine. A QEMU
//! virtual machine boots from a copy-on-write overlay of the source disk, is provisioned
//! over SSH like an EC2 builder, sealed, shut down, and exported as qcow2, VMDK, OVA and
//! raw files into the artifact directory.
//!
//! Pure parts, one file each: the plan (`plan.rs`), the `qemu-img` and `qemu-system`
//! command lines (`args.rs`), the OVF descriptor (`ovf.rs`), the OVA archive and its
//! manifest (`ova.rs`); `accel.rs` chooses KVM or TCG. `export.rs` writes the artifacts
//! (never under their final name until complete).
//!
//! The build (`build.rs`) runs them: an https source's download (`download.rs`), the seed disk with the build key (`seed.rs`), the QEMU
//! process (`vm.rs`), the work folder and its journal (`work.rs`).

pub mod accel;
pub mod args;
pub mod build;
pub mod download;
pub mod export;
pub mod kvm_watch;
pub mod ova;
pub mod ovf;
pub mod plan;
pub mod seed;
pub mod vm;
pub mod work;
