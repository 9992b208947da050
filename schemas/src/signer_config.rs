//! The signer's configuration file (`signer.yaml`).
