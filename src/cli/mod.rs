//! Command-line interface.
pub mod manifest;
