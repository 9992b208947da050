//! bootcfg: the first-boot agent. `main.rs` only calls [`cli::main`].
//!
//! Layers, each using only the ones above it (no cycles):
//! 1. **Leaves**: [`rootfs`] (the one confined, atomic file helper), [`runner`] (the one command
//!    runner: chroot, clean env, argv vectors), [`locks`] (dpkg/apt lock waiting), [`ini`]
//!    (order-preserving puppet.conf merge), [`debian`] (the one dpkg-database reader, the one
//!    apt source-line type, the root's architecture, `apt-get`'s options), [`exit`] (exit codes).
//! 2. **Vocabulary**: [`action`] (what modules ask for: [`action::Action`]; what the engine
//!    reports: [`action::Step`]; the [`action::KeySource`] seam) and [`ctx`] (facts about the
//!    machine, masking of secrets and long values).
//! 3. **Producers**: [`modules`] (apt conf, apt sources + keys, debconf, packages, Puppet, in
//!    boot order; each only plans a list of actions) and [`keys`] (keyserver fetch with the
//!    fingerprint check, the real [`action::KeySource`]).
//! 4. **Engine**: [`engine`] interprets actions: shows them (`plan`) or carries them out
//!    (`apply`), one code path. [`marker`]: run-once markers and the result file. [`report`]:
//!    what people see.
//! 5. **Agent**: [`datasource`] and [`imds`] (where user-data comes from), [`agent`] (fetch →
//!    parse → plan all → execute), [`args`], [`validate`] (`validate`, `schema`), [`cli`] (the
//!    command table).
//!
//! Invariants: **bootcfg writes only under `--root`**; **every command runs inside the root**;
//! **secrets never reach logs or plan output**; **every module is planned before anything is
//! changed**; **a module's marker is written only after it succeeded**.

pub mod action;
pub mod agent;
pub mod args;
pub mod cli;
pub mod ctx;
pub mod datasource;
pub mod debian;
pub mod engine;
pub mod exit;
pub mod imds;
pub mod ini;
pub mod keys;
pub mod locks;
pub mod marker;
pub mod modules;
pub mod report;
pub mod rootfs;
pub mod runner;
pub mod validate;
