//! TODO(clients)
