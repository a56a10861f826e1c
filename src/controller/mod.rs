//! The Kubernetes controller.
