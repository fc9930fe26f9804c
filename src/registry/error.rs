//! What can go wrong talking to a registry, each variant one line a user can act on, naming the
//! host, repository, reference or blob at fault. Passwords and tokens never appear here.

use crate::image::digest::Mismatch;
use crate::image::import::ImportError;
use crate::image::store::StoreError;

use super::credentials::CredentialsError;
use super::reference::ParseError;

/// Hint added to TLS failures.
const TLS_HINT: &str =
    "(use --tls-verify=false to skip verification, or --cert-dir DIR with the registry's CA as DIR/ca.crt)";

/// A registry operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The host name does not resolve.
    #[error("{host}: unknown host (the name does not resolve)")]
    UnknownHost {
        /// host[:port]
        host: String,
    },
    /// Nothing answers, or the connection broke.
    #[error("{host}: {detail}")]
    Connect {
        /// host[:port]
        host: String,
        /// What happened (connection refused, reset, timed out).
        detail: String,
    },
    /// The TLS handshake failed (unknown CA, wrong name, plain HTTP server).
    #[error("{host}: TLS handshake failed: {detail} {TLS_HINT}")]
    Tls {
        /// host[:port]
        host: String,
        /// rustls' reason.
        detail: String,
    },
    /// `GET /v2/` did not answer as a distribution registry does.
    #[error("{host} does not speak the registry API v2: GET /v2/ answered {status}")]
    NotV2 {
        /// host[:port]
        host: String,
        /// The HTTP status it answered.
        status: u16,
    },
    /// The credentials were refused (or none were given where they are needed).
    #[error("{host}: unauthorized: {message}")]
    Unauthorized {
        /// host[:port]
        host: String,
        /// The registry's own message.
        message: String,
    },
    /// The credentials are good but do not allow this (docker's line).
    #[error("denied: requested access to the resource is denied ({repository}: {message})")]
    Denied {
        /// The repository.
        repository: String,
        /// The registry's own message.
        message: String,
    },
    /// No manifest under this tag or digest.
    #[error("manifest for {reference} not found: manifest unknown")]
    ManifestUnknown {
        /// The reference asked for.
        reference: String,
    },
    /// The repository does not exist.
    #[error("{reference}: repository does not exist or may require 'strata login': name unknown")]
    NameUnknown {
        /// The reference asked for.
        reference: String,
    },
    /// An index without a manifest for the platform asked for.
    #[error("{reference}: no image for platform {wanted} (the index has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms there are, comma separated.
        available: String,
    },
    /// A docker schema 1 manifest (deprecated since 2019, refused by docker 25 too).
    #[error(
        "{reference}: the registry holds a docker schema 1 manifest ({media_type}), which Strata does not support; push the image again with a current tool"
    )]
    Schema1 {
        /// The reference.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest of a type that is neither an image manifest nor an index.
    #[error("{reference}: not an image: media type {media_type}")]
    NotAnImage {
        /// The reference.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// Content that does not match its digest or size.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// Any other answer of the registry.
    #[error("{method} {url}: {status} {message}")]
    Http {
        /// The request method.
        method: String,
        /// The URL (no credentials in it).
        url: String,
        /// The status.
        status: u16,
        /// The registry's message, or the status text.
        message: String,
    },
    /// A registry answer that is malformed.
    #[error("{what}: {detail}")]
    Protocol {
        /// Which answer.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A local file (certificate, partial blob, layer to push).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] ParseError),
    /// Bringing content into the store.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credential files or helpers.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl RegistryError {
    /// Whether trying again may help (the network or the registry failed, not the request).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Http { status, .. } => matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Result of registry operations.
pub type Result<T> = std::result::Result<T, RegistryError>;
