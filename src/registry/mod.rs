//! OCI distribution registries (distribution-spec v1.1): how images leave one machine and reach
//! another. Sits between the CLI and the image store: `cli` → `registry` → `image`.
//!
//! - [`reference`]: image references normalized as docker does (`busybox` is
//!   `docker.io/library/busybox:latest`).
//! - [`credentials`]: docker's `config.json`, podman's `auth.json` and `docker-credential-*`
//!   helpers.
pub mod credentials;
pub mod reference;
