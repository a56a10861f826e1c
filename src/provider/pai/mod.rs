//! Alibaba Cloud PAI AIWorkSpace client.

pub mod error;
