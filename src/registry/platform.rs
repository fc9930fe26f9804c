//! Platforms as `--platform` names them (`linux/amd64`, `linux/arm64/v8`), and the choice of an
//! index entry for one (image-spec `image-index.md`: os, architecture, variant).

use std::fmt;

use crate::image::spec::{Descriptor, Platform, host_architecture};

/// The platform asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant, if one was asked for.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// This machine's: linux and its architecture.
    pub fn host() -> PlatformSpec {
        PlatformSpec { os: "linux".into(), architecture: host_architecture().into(), variant: None }
    }

    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(s: &str) -> Result<PlatformSpec, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(PlatformSpec { os: os.to_lowercase(), architecture: normalize_arch(arch), variant: None })
            }
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(PlatformSpec {
                os: os.to_lowercase(),
                architecture: normalize_arch(arch),
                variant: Some(variant.to_lowercase()),
            }),
            _ => Err(format!("invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")),
        }
    }

    /// Whether an index entry's platform is this one (a variant not asked for matches any).
    pub fn matches(&self, p: &Platform) -> bool {
        p.os == self.os
            && normalize_arch(&p.architecture) == self.architecture
            && match (&self.variant, &p.variant) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(want), None) => self.architecture == "arm64" && want == "v8",
            }
    }

    /// The entry of `manifests` for this platform (the only one, when none names a platform).
    pub fn pick<'d>(&self, manifests: &'d [Descriptor]) -> Option<&'d Descriptor> {
        let images = manifests.iter().filter(|m| !is_attestation(m));
        let mut named = images.clone().filter(|m| m.platform.as_ref().is_some_and(|p| self.matches(p)));
        if let Some(d) = named.next() {
            return Some(d);
        }
        let unnamed: Vec<&Descriptor> = images.filter(|m| m.platform.is_none()).collect();
        (unnamed.len() == 1 && manifests.len() == 1).then(|| unnamed[0])
    }
}

/// BuildKit's attestation manifests sit in indexes as `unknown/unknown`.
fn is_attestation(d: &Descriptor) -> bool {
    d.annotations.get("vnd.docker.reference.type").is_some_and(|t| t == "attestation-manifest")
        || d.platform.as_ref().is_some_and(|p| p.os == "unknown")
}

fn normalize_arch(a: &str) -> String {
    match a.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.to_string(),
    }
}

impl From<&Platform> for PlatformSpec {
    fn from(p: &Platform) -> PlatformSpec {
        PlatformSpec { os: p.os.clone(), architecture: p.architecture.clone(), variant: p.variant.clone() }
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use crate::image::spec::MediaType;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(MediaType::OciManifest, Digest::sha256_of(arch.as_bytes()), 1);
        d.platform = Some(Platform { os: os.into(), architecture: arch.into(), variant: variant.map(Into::into) });
        d
    }

    #[test]
    fn picks_the_platform_asked_for() {
        let list =
            vec![entry("linux", "arm", Some("v7")), entry("linux", "arm64", Some("v8")), entry("linux", "amd64", None)];
        let p = |s: &str| PlatformSpec::parse(s).unwrap();
        assert_eq!(p("linux/amd64").pick(&list), Some(&list[2]));
        assert_eq!(p("linux/arm64").pick(&list), Some(&list[1]));
        assert_eq!(p("linux/arm64/v8").pick(&list), Some(&list[1]));
        assert_eq!(p("linux/arm/v7").pick(&list), Some(&list[0]));
        assert_eq!(p("linux/arm/v6").pick(&list), None);
        assert_eq!(p("linux/s390x").pick(&list), None);
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert!(PlatformSpec::parse("amd64").is_err());
    }

    #[test]
    fn skips_attestations() {
        let list = vec![entry("unknown", "unknown", None), entry("linux", "amd64", None)];
        assert_eq!(PlatformSpec::parse("linux/amd64").unwrap().pick(&list), Some(&list[1]));
    }
}
