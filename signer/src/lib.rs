//! signer: library half; `main.rs` only routes to it.
