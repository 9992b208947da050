//! The peer comparison with cloud-init on Debian 12 (cloud-init 22.4): see peer/mod.rs.
//!
//!   sudo -E cargo test -p bootcfg --test peer_cloudinit -- --nocapture

mod peer;
mod support;

const RELEASE: support::Release = support::BOOKWORM;
