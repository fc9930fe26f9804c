//! References (placeholder).
