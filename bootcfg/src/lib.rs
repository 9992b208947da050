//! bootcfg: the first-boot agent. `main.rs` only calls [`cli::main`].
//!
//! - [`cli`]: the command table (one arm per subcommand).
//! - [`validate`]: `bootcfg validate` and `bootcfg schema`.
//! - [`agent`]: `bootcfg run`, `plan`, `apply`, `status`.
//! - [`datasource`], [`imds`]: where user-data comes from (file, NoCloud seed, EC2 IMDSv2).
//! - [`modules`]: apt conf, apt sources + keys, debconf, packages, Puppet, in boot order; each
//!   only plans a list of [`plan::Action`]s.
//! - [`plan`]: the engine that shows (`plan`) or carries out (`apply`) actions: one code path.
//! - [`rootfs`]: the one file-write helper (stays under `--root`, atomic). [`runner`]: the one
//!   command runner (chroot, clean env, argv vectors). [`locks`]: dpkg/apt lock waiting.
//! - [`marker`]: run-once markers and the result file. [`keys`]: keyserver fetch with
//!   fingerprint check. [`ini`]: order-preserving puppet.conf merge.
//!
//! Invariants: **bootcfg writes only under `--root`**; **every command runs inside the root**;
//! **secrets never reach logs or plan output**; **a module's marker is written only after it
//! succeeded**.

pub mod agent;
pub mod cli;
pub mod datasource;
pub mod imds;
pub mod ini;
pub mod keys;
pub mod locks;
pub mod marker;
pub mod modules;
pub mod plan;
pub mod rootfs;
pub mod runner;
pub mod validate;
