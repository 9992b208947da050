//! The peer comparison with cloud-init on Debian 13 (cloud-init 25.1): see peer/mod.rs.
//!
//!   sudo -E cargo test -p bootcfg --test peer_cloudinit_trixie -- --nocapture

mod peer;
mod support;

const RELEASE: support::Release = support::TRIXIE;
