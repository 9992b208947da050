//! Every type that crosses a process, file or S3 boundary between bootcfg, conductor and signer.
//!
//! - [`userdata`]: cloud-config user-data (both cloud-init's `apt:` form and the older top-level keys),
//!   its decoding (base64, gzip, MIME multipart) and validation, normalised into one model.
//! - [`registration`]: the versioned registration record the conductor writes and the signer consumes.
//! - [`retirement`]: the record that a certname's instance is gone, so the signer never signs it
//!   again and the sweep revokes its certificate.
//! - [`group`]: enrollment groups (Auto Scaling, launch templates), their members and certname scheme.
//! - [`conductor_config`], [`signer_config`]: the two YAML configuration files.
//! - [`oids`]: the one table of Puppet and bootcfg certificate OIDs, and the extension policy.
//! - [`diag`]: located diagnostics (file, line, column, key path, fix) shared by every validator.
//! - [`pgp`]: OpenPGP armor decoding, public-key checks and fingerprints (no gpg needed).
//! - [`logging`] (feature `logging`): the one tracing set-up of the three tools (journald priorities).
//! - [`clidocs`] (feature `clidocs`): a tool's man page and completions, for its Debian package.
//! - [`registry`] (feature `registry`): where registrations live (`file://` or `s3://`), behind one trait.

#[cfg(feature = "clidocs")]
pub mod clidocs;
pub mod conductor_config;
pub mod config;
pub mod diag;
pub mod group;
#[cfg(feature = "logging")]
pub mod logging;
pub mod oids;
pub mod pgp;
pub mod registration;
#[cfg(feature = "registry")]
pub mod registry;
pub mod retirement;
pub mod signer_config;
pub mod userdata;
