//! Cloud clients.
