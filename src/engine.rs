//! Plan execution shared by the CLI and the controller.
