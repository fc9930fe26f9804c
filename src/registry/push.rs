//! push placeholder
