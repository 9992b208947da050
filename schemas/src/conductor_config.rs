//! The conductor's configuration file (`conductor.yaml`).
