//! signer: signs Puppet CSRs only for certnames the conductor registered.
//!
//! Two ways in, one decision ([`decide`]):
//! - `signer autosign CERTNAME` ([`hook`]): Puppet Server's policy executable. It decides and
//!   consumes the registration; Puppet signs on exit 0.
//! - `signer sweep` ([`sweep`]): lists pending CSRs through the CA HTTP API (or the CLI), decides,
//!   consumes, re-checks the fingerprint and signs. Catches CSRs that arrived before their registration.
//!
//! **Invariants:** nothing is signed without an unexpired registration consumed by a
//! compare-and-swap for that CSR, or (a CSR naming an enrollment group, with
//! `policy.groups.enabled`) without a verified identity document matching an active group whose
//! instance was claimed and slot taken, create-only, for that CSR; any error (registry, CA,
//! deadline) leaves the CSR unsigned.

pub mod asg;
pub mod audit;
pub mod ca;
pub mod cli;
pub mod craft;
pub mod csr;
pub mod decide;
pub mod der;
#[cfg(test)]
mod group_tests;
pub mod hook;
pub mod identity;
pub mod memreg;
pub mod sweep;
