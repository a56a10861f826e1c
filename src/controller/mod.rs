//! The Kubernetes controller.

pub mod fights;
pub mod index;
pub mod metrics;
pub mod resource;
