//! Alibaba Cloud PAI AIWorkSpace client.
