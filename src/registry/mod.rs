//! OCI distribution registries (distribution-spec v1.1): how images leave one machine and reach
//! another. Sits between the CLI and the image store: `cli` → `registry` → `image`.
//!
//! - [`reference`]: image references normalized as docker does (`busybox` is
//!   `docker.io/library/busybox:latest`).
//! - [`platform`]: `--platform OS/ARCH[/VARIANT]` and the choice of an index entry.
//! - [`credentials`]: docker's `config.json`, podman's `auth.json` and `docker-credential-*`
//!   helpers.
//! - [`tls`]: certs dirs, `--tls-verify`, where plain HTTP is allowed.
//! - [`auth`]: `WWW-Authenticate` challenges and Bearer tokens per scope.
//! - [`client`]: one registry's endpoints, with authentication, retries and redirects.
//! - [`progress`]: docker's per-layer lines, several moving at once.
//! - [`pull`]: manifest, platform, config, then the layers in parallel, resumable.
//! - [`push`]: blobs (skipped, mounted or uploaded in chunks), then the manifest.
//! - [`sources`]: which repositories hold a blob, for cross-repository mounts.
//! - [`workers`]: layers moved a few at a time.
//! - [`error`]: one line per failure a user can act on.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;
pub mod lazy;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod sources;
pub mod tls;
pub mod workers;
