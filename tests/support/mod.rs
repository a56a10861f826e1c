//! Helpers shared by the integration tests.

// Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod chaos;
pub mod cluster;
pub mod gitops;
pub mod node;
pub mod operator;
