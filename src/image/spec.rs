//! Typed OCI image JSON (image-spec v1.1: descriptor, image manifest, image index, image config,
//! image layout) and the `manifest.json` of `docker save` archives.
//!
//! These types are for reading. A manifest or config read from anywhere is kept as the raw bytes
//! it came in ([`Raw`]) and is never serialised again, so its digest stays what it was. Only
//! documents Strata makes itself (the store's `index.json`, manifests for docker-save images
//! that have none) are serialised from these types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::reference::{Name, ReferenceError};

/// Annotation naming a tag in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and Docker 25+ put on `index.json` entries: the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A media type; unknown ones are kept verbatim in [`MediaType::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum MediaType {
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.config.v1+json`
    OciConfig,
    /// `application/vnd.oci.image.layer.v1.tar`
    OciLayer,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    OciLayerGzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`
    OciLayerZstd,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.container.image.v1+json`
    DockerConfig,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`
    DockerLayerGzip,
    /// Anything else, verbatim.
    Other(String),
}

const MEDIA_TYPES: &[(MediaType, &str)] = &[
    (MediaType::OciIndex, "application/vnd.oci.image.index.v1+json"),
    (MediaType::OciManifest, "application/vnd.oci.image.manifest.v1+json"),
    (MediaType::OciConfig, "application/vnd.oci.image.config.v1+json"),
    (MediaType::OciLayer, "application/vnd.oci.image.layer.v1.tar"),
    (MediaType::OciLayerGzip, "application/vnd.oci.image.layer.v1.tar+gzip"),
    (MediaType::OciLayerZstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
    (MediaType::DockerManifestList, "application/vnd.docker.distribution.manifest.list.v2+json"),
    (MediaType::DockerManifest, "application/vnd.docker.distribution.manifest.v2+json"),
    (MediaType::DockerConfig, "application/vnd.docker.container.image.v1+json"),
    (MediaType::DockerLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
];

impl MediaType {
    /// The media type string.
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Other(s) => s,
            known => MEDIA_TYPES.iter().find(|(m, _)| m == known).map(|(_, s)| *s).unwrap_or_default(),
        }
    }

    /// An image index or docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// An image manifest (OCI or docker schema 2).
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// An encrypted layer (ocicrypt), which Strata cannot unpack.
    pub fn is_encrypted(&self) -> bool {
        self.as_str().ends_with("+encrypted")
    }
}

impl From<String> for MediaType {
    fn from(s: String) -> MediaType {
        MEDIA_TYPES.iter().find(|(_, name)| *name == s).map(|(m, _)| m.clone()).unwrap_or(MediaType::Other(s))
    }
}

impl From<MediaType> for String {
    fn from(m: MediaType) -> String {
        m.as_str().to_string()
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The platform of an index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v8`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: MediaType,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Annotations (`org.opencontainers.image.ref.name`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor without annotations or platform.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type, digest, size, annotations: BTreeMap::new(), platform: None }
    }

    /// The `org.opencontainers.image.ref.name` annotation.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_REF_NAME).map(String::as_str)
    }
}

/// An image manifest (OCI, or docker schema 2 which has the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Optional in OCI (umoci leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (docker); also the shape of a layout's `index.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// Optional in OCI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config this tool reads (OCI image-spec `config.md`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// When the image was made (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default)]
    pub author: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// The runtime config (Env, Cmd, ...), kept as JSON for `inspect`.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// One entry per build step, empty layers included.
    #[serde(default)]
    pub history: Vec<History>,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digest of each layer's uncompressed tar, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// One build step of an image.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// This step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerArchiveEntry {
    /// Path of the config file in the archive.
    pub config: String,
    /// Names (`repo:tag`); null for untagged images.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars in the archive, bottom first.
    pub layers: Vec<String>,
}

impl DockerArchiveEntry {
    /// The image's names.
    pub fn names(&self) -> Result<Vec<Name>, ReferenceError> {
        self.repo_tags.iter().flatten().map(|t| Name::parse(t)).collect()
    }

    /// The config digest the config's member name states (`<hex>.json`, `blobs/sha256/<hex>`).
    pub fn named_config_digest(&self) -> Option<Digest> {
        let hex = self.config.rsplit('/').next()?.trim_end_matches(".json");
        Digest::parse(&format!("sha256:{hex}")).ok()
    }
}

/// `oci-layout` file contents.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciLayout {
    /// `1.0.0`.
    pub image_layout_version: String,
}

/// How a manifest-or-index blob whose descriptor gave no useful media type looks inside.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<MediaType>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Whether `bytes` hold an image index (by its `mediaType`, else by having `manifests`).
pub fn looks_like_index(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match p.media_type {
            Some(m) if m.is_index() => true,
            Some(m) if m.is_manifest() => false,
            _ => p.manifests.is_some(),
        },
        Err(_) => false,
    }
}

/// The OCI architecture name of the machine this runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UMOCI_MANIFEST: &str = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:43a488e391f11992ec54d61eb9ad4aee53f67be79176df3af53f8d8fc5567c33","size":923},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:581c70a679f8d7cd9f5d7377816dbdbd6b299c40ac80ba2cd433bfa2d0f71118","size":1084460}]}"#;

    #[test]
    fn reads_a_manifest_without_media_type() {
        let m: ImageManifest = serde_json::from_str(UMOCI_MANIFEST).unwrap();
        assert!(m.media_type.is_none());
        assert_eq!(m.config.media_type, MediaType::OciConfig);
        assert_eq!(m.layers[0].media_type, MediaType::OciLayerGzip);
        assert!(!looks_like_index(UMOCI_MANIFEST.as_bytes()));
    }

    #[test]
    fn unknown_media_types_survive_a_round_trip() {
        let m = MediaType::from("application/vnd.example.thing+json".to_string());
        assert_eq!(m, MediaType::Other("application/vnd.example.thing+json".into()));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"application/vnd.example.thing+json\"");
        assert_eq!(MediaType::from(MediaType::OciIndex.as_str().to_string()), MediaType::OciIndex);
        assert!(MediaType::from("application/vnd.oci.image.layer.v1.tar+gzip+encrypted".to_string()).is_encrypted());
    }

    #[test]
    fn tells_an_index_from_a_manifest() {
        assert!(looks_like_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(looks_like_index(br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#));
        assert!(!looks_like_index(b"not json"));
    }

    #[test]
    fn reads_a_config_with_empty_layers_in_history() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "history":[{"created_by":"ENV A=b","empty_layer":true},{"created_by":"COPY"}]}"#,
        )
        .unwrap();
        assert!(c.history[0].empty_layer);
        assert!(!c.history[1].empty_layer);
    }
}
