//! Image names as users type them (`busybox`, `localhost/fx/multi:latest`, `host:5000/a/b:v1`)
//! and the one form the store keeps them in.
//!
//! Names follow the distribution reference grammar loosely: a repository of lowercase path
//! components (the first may be a `host[:port]`), a tag after the last `:` that follows the last
//! `/` (default `latest`). Docker Hub's implied prefixes are dropped (`docker.io/library/busybox`
//! is kept as `busybox`), so names read the way `docker images` shows them.

/// Why a string is not an image name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Bad repository part.
    #[error("invalid image name {0:?}: repository must be lowercase letters, digits and . _ - / separators")]
    Repository(String),
    /// Bad tag part.
    #[error("invalid image name {0:?}: tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -")]
    Tag(String),
    /// A digest reference where a tag is needed.
    #[error("invalid image name {0:?}: a name@digest cannot be used as a tag")]
    Digest(String),
}

/// A validated `repository:tag`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    repository: String,
    tag: String,
}

impl Name {
    /// Parses a user-typed name; `latest` when no tag is given.
    pub fn parse(s: &str) -> Result<Name, ReferenceError> {
        if s.contains('@') {
            return Err(ReferenceError::Digest(s.to_string()));
        }
        let (repo, tag) = split_tag(s);
        let repo = strip_hub(repo);
        if !valid_repository(repo) {
            return Err(ReferenceError::Repository(s.to_string()));
        }
        let tag = tag.unwrap_or("latest");
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag(s.to_string()));
        }
        Ok(Name { repository: repo.to_string(), tag: tag.to_string() })
    }

    /// A name from parts already split (for names derived from file names).
    pub fn with_tag(repository: &str, tag: &str) -> Result<Name, ReferenceError> {
        Name::parse(&format!("{repository}:{tag}"))
    }

    /// The repository part.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag part.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Splits off a tag: the part after the last `:` if no `/` follows it (`host:5000/x` has none).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

/// Drops Docker Hub's prefixes as far as the rest reads back as the same name (as
/// `registry::Reference::familiar` shortens): `library/` only before a last component, and
/// nothing when the rest would start with a host (`docker.io/a.b/c` stays whole).
fn strip_hub(repo: &str) -> &str {
    for hub in ["docker.io/", "index.docker.io/"] {
        let Some(rest) = repo.strip_prefix(hub) else { continue };
        if rest.split_once('/').is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost") {
            return repo;
        }
        return match rest.strip_prefix("library/") {
            Some(name) if !name.contains('/') => name,
            _ => rest,
        };
    }
    repo
}

fn valid_repository(repo: &str) -> bool {
    if repo.is_empty() || repo.len() > 255 {
        return false;
    }
    repo.split('/').enumerate().all(|(i, comp)| {
        let host_like =
            i == 0 && repo.contains('/') && (comp.contains('.') || comp.contains(':') || comp == "localhost");
        let allowed = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-')
                || (host_like && (c == ':' || c.is_ascii_uppercase()))
        };
        !comp.is_empty()
            && comp.chars().all(allowed)
            && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
            && comp.ends_with(|c: char| c.is_ascii_alphanumeric())
    })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !tag.starts_with(['.', '-'])
}

/// A repository name made from a file or directory name (`oci-multi.tar` gives `oci-multi`).
pub fn repository_from_file_name(name: &str) -> Option<String> {
    let stem = name.split('.').next().unwrap_or(name);
    let mut repo: String = stem
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    repo = repo.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    valid_repository(&repo).then_some(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_the_docker_way() {
        assert_eq!(Name::parse("busybox").unwrap().to_string(), "busybox:latest");
        assert_eq!(Name::parse("docker.io/library/busybox:1.36").unwrap().to_string(), "busybox:1.36");
        assert_eq!(Name::parse("localhost/fx/multi:latest").unwrap().to_string(), "localhost/fx/multi:latest");
        let n = Name::parse("host:5000/a/b").unwrap();
        assert_eq!((n.repository(), n.tag()), ("host:5000/a/b", "latest"));
        // Found by fuzzing: Docker Hub's prefixes go only as far as the name reads back the same.
        for (typed, name) in [
            ("docker.io/user/app", "user/app:latest"),
            ("docker.io/library/a/b", "library/a/b:latest"),
            ("docker.io/docker.io/li", "docker.io/docker.io/li:latest"),
            ("docker.io/a.b/c:1", "docker.io/a.b/c:1"),
        ] {
            let n = Name::parse(typed).unwrap();
            assert_eq!(n.to_string(), name);
            assert_eq!(Name::parse(&n.to_string()).unwrap(), n);
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert!(matches!(Name::parse("Busybox"), Err(ReferenceError::Repository(_))));
        assert!(matches!(Name::parse("a/../b"), Err(ReferenceError::Repository(_))));
        assert!(matches!(Name::parse("a:-x"), Err(ReferenceError::Tag(_))));
        assert!(matches!(Name::parse("a:"), Err(ReferenceError::Tag(_))));
        assert!(matches!(Name::parse("a@sha256:00"), Err(ReferenceError::Digest(_))));
    }

    #[test]
    fn derives_repositories_from_file_names() {
        assert_eq!(repository_from_file_name("oci-multi").as_deref(), Some("oci-multi"));
        assert_eq!(repository_from_file_name("My Image.tar.gz").as_deref(), Some("my-image"));
        assert_eq!(repository_from_file_name("...").as_deref(), None);
    }
}
