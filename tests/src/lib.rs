//! Test harness shared by the integration tests of every crate. Each module starts or builds one
//! real part on 127.0.0.1 and fails loudly, naming the setup command, when something it needs is missing.

pub mod aptrepo;
pub mod autoscaling;
pub mod bins;
pub mod chroot;
pub mod faultproxy;
pub mod iid;
pub mod imds;
pub mod joinbench;
pub mod moto;
pub mod puppet;
pub mod puppet_root;
pub mod rootfs;
pub mod scenario;
