//! Credentials (placeholder; see the helper task).
