//! Command-line interface.
pub mod gitops;
pub mod manifest;
