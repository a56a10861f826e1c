//! Huawei Cloud IMS client.
