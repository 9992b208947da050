//! bootcfg: the first-boot agent. `main.rs` only calls [`cli::main`].
//!
//! - [`cli`]: the command table (one arm per subcommand).
//! - [`validate`]: `bootcfg validate` and `bootcfg schema`.
//! - [`agent`]: `bootcfg run`, `plan`, `apply`, `status`.

pub mod agent;
pub mod cli;
pub mod validate;
