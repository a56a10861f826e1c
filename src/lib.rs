//! image-label-operator: keeps the labels of cloud ML images and datasets equal
//! to what an `ImageLabelSet` / `DatasetLabelSet` declares.
//!
//! Rooms: [`api`] (resource types and validation), [`plan`] (pure diffing),
//! [`provider`] (cloud clients), [`sign`] (request signing shared by clients
//! and the simulator), [`engine`] (plan execution shared by CLI and
//! controller), `sim` (the cloud simulator, behind the default `sim`
//! feature), [`cli`], [`controller`].

pub mod api;
pub mod cli;
pub mod controller;
pub mod engine;
pub mod export;
pub mod plan;
pub mod provider;
pub mod sign;
#[cfg(feature = "sim")]
pub mod sim;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod redaction_tests;
