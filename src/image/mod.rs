//! The image tool: a content-addressed store of OCI images whose layers are unpacked once each,
//! in the upper-dir format Strata mounts (SEMANTICS.md "OCI layers").
//!
//! - [`digest`]: validated digests and streaming verification.
//! - [`spec`]: typed OCI / docker JSON.
//! - [`reference`]: image names.
//! - [`store`]: blobs, names, unpacked layers, lock, reachability.
//! - [`unpack`]: a layer tar into a layer dir, safely.
//! - [`owners`]: who may set which owner; a rootless container's ids mapped back.
//! - [`source`]: directories and tar archives read by member name.
//! - [`pipeline`]: the one pass over a layer blob (store, decompress, hash, unpack), threaded.
//! - [`import`]: OCI layouts, oci-archive and docker-save archives into the store.
//! - [`export`]: images out of the store as OCI layouts, oci-archive or docker-save archives.
//! - [`progress`]: per-layer progress lines on a terminal.
//! - [`lower`]: an image's layers looked up by merged path, without mounting them.
//! - [`diff`]: a container's upper dir against its image: `A`/`C`/`D` changes and the layer plan.
//! - [`pack`]: a layer plan written as a tar (the inverse of [`unpack`]).
//! - [`instruction`]: the Dockerfile instructions `commit -c` applies to a config.
//! - [`compress`]: layer blobs compressed, and converted to another compression for a push.
//! - [`commit`]: a container's changes as a new image in the store.

pub mod check;
pub mod commit;
pub mod compress;
pub mod convert;
pub mod diff;
pub mod digest;
pub mod estargz;
pub mod export;
pub mod import;
pub mod instruction;
pub mod lower;
pub mod owners;
pub mod pack;
pub mod pgzip;
pub mod pipeline;
pub mod progress;
pub mod reference;
pub mod source;
pub mod spec;
pub mod store;
pub mod unpack;
