//! Credentials (placeholder until the credentials module lands).

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// Placeholder.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Placeholder.
    #[error("credentials")]
    Placeholder,
}
