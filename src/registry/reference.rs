//! Image references as docker normalizes them (distribution's `reference` grammar):
//! `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`.
//!
//! - The first component is a registry host when it holds a `.` or a `:`, or is `localhost`;
//!   otherwise the registry is `docker.io` (Docker Hub), and a one-component path gets
//!   `library/` in front (`busybox` is `docker.io/library/busybox`).
//! - `index.docker.io` is `docker.io`; Docker Hub's API lives at `registry-1.docker.io`.
//! - Without a tag or digest the tag is `latest`.
//! - The *familiar* form drops `docker.io/` and `library/` again: it is the name the store
//!   keeps and `strata images` shows (`busybox:latest`, `127.0.0.1:5000/fx/a:1`).

use std::fmt;

use crate::image::digest::Digest;
use crate::image::reference::{Name, ReferenceError};

/// Docker Hub's canonical host name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a string is not a valid reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Empty, or a bad host, path, tag or digest.
    #[error("invalid reference format: {0:?}{1}")]
    Invalid(String, &'static str),
}

/// A fully qualified image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path within the registry (`library/busybox`, `fx/a`).
    pub repository: String,
    /// The tag, if one was given or implied.
    pub tag: Option<String>,
    /// The manifest digest, if one was given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses what a user typed; `latest` when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Reference, ParseError> {
        let bad = |why: &'static str| ParseError::Invalid(s.to_string(), why);
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad(": bad digest"))?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad(": tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"));
        }
        let (registry, path) = split_registry(name);
        if !valid_host(registry) {
            return Err(bad(": bad registry host"));
        }
        let repository = match registry {
            DOCKER_HUB if !path.contains('/') => format!("library/{path}"),
            _ => path.to_string(),
        };
        if !valid_path(&repository) {
            return Err(bad(": repository must be lowercase letters, digits and separators (. _ __ - /)"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry: registry.to_string(), repository, tag, digest })
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// What a manifest request names: the digest if there is one, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host:port to connect to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// `registry/repository` without `docker.io/library/` shortening (`docker.io/library/busybox`).
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as docker shows it (`busybox`, `user/app`, `127.0.0.1:5000/fx/a`), shortened
    /// only as far as it reads back as the same repository: `library/` goes when one component
    /// is left (`docker.io/library/a/b` stays whole), `docker.io/` unless what is left starts
    /// with a component that reads as a host (`docker.io/a.b/c`).
    pub fn familiar_repository(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.full_repository();
        }
        let short = match self.repository.strip_prefix("library/") {
            Some(name) if !name.contains('/') => name,
            _ => &self.repository,
        };
        if split_registry(short) == (DOCKER_HUB, short) { short.to_string() } else { self.full_repository() }
    }

    /// The name this reference gives an image in the store, when it has a tag.
    pub fn store_name(&self) -> Option<Result<Name, ReferenceError>> {
        let tag = self.tag.as_deref()?;
        Some(Name::with_tag(&self.familiar_repository(), tag))
    }

    /// The familiar form with tag and digest (`busybox:latest`, `fx/a@sha256:…`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        push_suffix(&mut s, self);
        s
    }
}

/// The fully qualified form (`docker.io/library/busybox:latest`), as `docker pull` prints last.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.full_repository();
        push_suffix(&mut s, self);
        f.write_str(&s)
    }
}

fn push_suffix(s: &mut String, r: &Reference) {
    if let Some(t) = &r.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &r.digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
}

/// The host a registry name is reached at (`docker.io` → Docker Hub's API host).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB { DOCKER_HUB_API } else { registry }
}

/// The registry a user names in `login`/`logout` (`docker.io`, `https://host:5000/v2/`, `HOST`),
/// reduced to its host[:port] key; Docker Hub's aliases are `docker.io`.
pub fn registry_host(s: &str) -> String {
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Splits off the registry host: the first component when it looks like one, else Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if first == "index.docker.io" {
                (DOCKER_HUB, rest)
            } else {
                (first, rest)
            }
        }
        _ => (DOCKER_HUB, name),
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let ipv6 = name.starts_with('[') && name.ends_with(']');
    let name_ok = ipv6
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    port_ok && name_ok
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.len() <= 255 && path.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_as_docker_does() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("mysql:5.7"), "docker.io/library/mysql:5.7");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("index.docker.io/library/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(full("localhost/a"), "localhost/a:latest");
        assert_eq!(full("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(full("127.0.0.1:5000/fx/a"), "127.0.0.1:5000/fx/a:latest");
        assert_eq!(full("quay.io/x/y:z"), "quay.io/x/y:z");
        assert_eq!(full("Example.COM/a"), "Example.COM/a:latest");
    }

    #[test]
    fn keeps_digests() {
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), d);
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        let r = Reference::parse(&format!("h:1/a:t@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.object()), (Some("t"), d.clone()));
        assert!(r.store_name().is_some());
    }

    #[test]
    fn familiar_forms_are_what_images_shows() {
        let r = Reference::parse("docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.familiar(), "busybox:1.36");
        assert_eq!(r.store_name().unwrap().unwrap().to_string(), "busybox:1.36");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("127.0.0.1:5000/fx/a:1").unwrap();
        assert_eq!(r.familiar(), "127.0.0.1:5000/fx/a:1");
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(Reference::parse("user/app").unwrap().familiar(), "user/app:latest");
        // Found by fuzzing: shortened forms that would read back as another repository.
        for (full, familiar) in [
            ("docker.io/library/a/b:1", "library/a/b:1"),
            ("docker.io/a.b/c:1", "docker.io/a.b/c:1"),
            ("docker.io/localhost/c:1", "docker.io/localhost/c:1"),
            ("docker.io/docker.io/c:1", "docker.io/docker.io/c:1"),
        ] {
            let r = Reference::parse(full).unwrap();
            assert_eq!(r.familiar(), familiar);
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
        }
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for s in ["", "Busybox", "a//b", "a/-b", "a:", "a:-x", "a@sha256:00", "host:x/a", "a__-b", "-a", "a/b/"] {
            assert!(Reference::parse(s).is_err(), "{s:?} should be refused");
        }
        assert!(Reference::parse("a__b/c-d/e.f/g--h").is_ok());
        assert!(Reference::parse("[::1]:5000/a").is_ok());
    }

    #[test]
    fn registry_hosts_of_login_arguments() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("http://h:1/v2/"), "h:1");
    }
}
