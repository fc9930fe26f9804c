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

/// Placeholder.
pub struct Credentials;

impl Credentials {
    /// Placeholder.
    pub fn from_env() -> Credentials {
        Credentials
    }
    /// Placeholder.
    pub fn with_files(_files: Vec<std::path::PathBuf>) -> Credentials {
        Credentials
    }
    /// Placeholder.
    pub fn get(&self, _registry: &str) -> Result<Option<Auth>, CredentialsError> {
        Ok(None)
    }
    /// Placeholder.
    pub fn save(&self, _registry: &str, _auth: &Auth) -> Result<String, CredentialsError> {
        Err(CredentialsError::Placeholder)
    }
    /// Placeholder.
    pub fn remove(&self, _registry: &str) -> Result<bool, CredentialsError> {
        Ok(false)
    }
    /// Placeholder.
    pub fn remove_all(&self) -> Result<Vec<String>, CredentialsError> {
        Ok(vec![])
    }
}
