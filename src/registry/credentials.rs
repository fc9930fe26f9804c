//! Registry credentials where docker and podman keep them: docker's `config.json`, podman's
//! `auth.json` (containers-auth.json(5)) and the `docker-credential-*` helpers of
//! docker-credential-helpers.
//!
//! One file format serves both tools:
//!
//! ```text
//! {
//!   "auths":       { "KEY": { "auth": base64("user:password") } | { "username", "password" }
//!                           | { "identitytoken": TOKEN } },
//!   "credHelpers": { "HOST": "NAME" },      per registry: docker-credential-NAME holds them
//!   "credsStore":  "NAME",                  every other registry: docker-credential-NAME
//!   ...                                     anything else, kept as it is
//! }
//! ```
//!
//! A key names a registry as `host[:port]`, in docker's older URL forms (`https://host/v1/`,
//! `http://host/v2/`) or, in podman's files only, a repository namespace (`host/ns/repo`).
//! Docker Hub is `docker.io`, `index.docker.io`, `registry-1.docker.io` or
//! `https://index.docker.io/v1/`; docker writes the last, podman `docker.io`.
//!
//! Lookup walks the files in order; in each, `credHelpers` comes before `credsStore`, which comes
//! before `auths`, and the first that has credentials decides. A namespaced lookup
//! (`quay.io/ns/repo`) tries the most specific `auths` key first, as podman does; helpers are asked
//! by host only.
//!
//! Secrets travel only through the files (0600, written atomically) and the helpers' stdin and
//! stdout; no error message, argument or environment variable ever holds one.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// Docker Hub's name in podman's files and as a parsed key.
const HUB: &str = "docker.io";
/// Docker Hub's key in docker's `config.json` (docker's `IndexServer`).
const HUB_DOCKER_KEY: &str = "https://index.docker.io/v1/";
/// What a helper prints when it has nothing for a server (docker-credential-helpers'
/// `errCredentialsNotFoundMessage`).
const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name docker gives an identity token.
const TOKEN_USER: &str = "<token>";
/// Base64 as docker writes it, read with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A user name and password (or identity token) for one registry.
///
/// An identity token is a password whose user name is `<token>`, as docker's helpers keep it.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The user name, or `<token>` for an identity token.
    pub username: String,
    /// The password or token; never printed.
    pub password: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// What went wrong reading or writing credentials; each names the file, key or helper at fault
/// and none holds a password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A credentials file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A credentials file is not JSON; it is left as it is.
    #[error("{path} is not valid JSON: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the syntax broke (serde_json's syntax errors quote no content).
        source: serde_json::Error,
    },
    /// A credentials file is JSON but not in the expected shape; it is left as it is.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. `"auths" is not an object`.
        what: String,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("{path}: the \"auth\" of {key} is not base64 of \"user:password\"")]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The `auths` key of the entry.
        key: String,
    },
    /// A credentials file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// There is no file to write: no `$HOME`, `$DOCKER_CONFIG` or `$REGISTRY_AUTH_FILE`.
    #[error("no credentials file to write: set $REGISTRY_AUTH_FILE, $DOCKER_CONFIG or $HOME")]
    NoAuthFile,
    /// The registry given is empty or not a registry.
    #[error("{registry:?} is not a registry")]
    BadRegistry {
        /// What was given.
        registry: String,
    },
    /// A user name with `:` cannot be kept in an `auth` field.
    #[error("user name {username:?} holds ':', which \"user:password\" cannot keep")]
    BadUsername {
        /// The user name.
        username: String,
    },
    /// A file names a helper whose name could be a path.
    #[error("{path}: invalid credential helper name {name:?}")]
    BadHelperName {
        /// The file naming it.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// Helpers hold credentials per registry, not per repository namespace.
    #[error("docker-credential-{helper} cannot keep credentials for the namespace {key}, only for a registry")]
    NamespaceInHelper {
        /// The helper's name.
        helper: String,
        /// The namespaced key.
        key: String,
    },
    /// A configured helper is not installed.
    #[error("credential helper {program} not found in PATH")]
    HelperMissing {
        /// `docker-credential-NAME`.
        program: String,
    },
    /// A helper could not be run or talked to.
    #[error("cannot run {program}: {source}")]
    HelperRun {
        /// The helper's path.
        program: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A helper failed.
    #[error("{program} {verb} failed: {message}")]
    HelperFailed {
        /// `docker-credential-NAME`.
        program: String,
        /// `get`, `store`, `erase` or `list`.
        verb: &'static str,
        /// The first line it printed (any secret replaced by `<redacted>`), or its exit status.
        message: String,
    },
    /// A helper printed something that is not the JSON the protocol asks for.
    #[error("{program} {verb} printed invalid JSON")]
    HelperOutput {
        /// `docker-credential-NAME`.
        program: String,
        /// `get` or `list`.
        verb: &'static str,
    },
}

type Result<T> = std::result::Result<T, CredentialsError>;

/// Whose conventions a file follows: which key it gives Docker Hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// docker's `config.json`: Docker Hub is `https://index.docker.io/v1/`.
    Docker,
    /// podman's `auth.json` (and any other name): Docker Hub is `docker.io`.
    Podman,
}

impl Flavor {
    /// A file named `config.json` is docker's; any other is podman's.
    fn of(path: &Path) -> Flavor {
        match path.file_name() {
            Some(name) if name == "config.json" => Flavor::Docker,
            _ => Flavor::Podman,
        }
    }
}

/// One credentials file and its conventions.
#[derive(Clone, Debug)]
struct AuthFile {
    path: PathBuf,
    flavor: Flavor,
}

impl AuthFile {
    fn new(path: PathBuf) -> AuthFile {
        let flavor = Flavor::of(&path);
        AuthFile { path, flavor }
    }
}

/// Where credentials are read from and written to: files in lookup order, the one login writes,
/// and where `docker-credential-*` helpers are looked for.
#[derive(Clone, Debug)]
pub struct Credentials {
    files: Vec<AuthFile>,
    /// Index in `files` of the file `save` writes.
    write: Option<usize>,
    /// Where helpers are looked for; `$PATH` when `None`.
    helper_path: Option<OsString>,
}

impl Credentials {
    /// The files docker and podman use, from the environment.
    ///
    /// With `$REGISTRY_AUTH_FILE` set, that file alone (as podman does). Otherwise, in lookup
    /// order: podman's `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/UID/auth.json`
    /// when the variable is unset), `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`
    /// by default), then docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json` by
    /// default). Docker's legacy `~/.dockercfg` is not read.
    ///
    /// Login ([`Credentials::save`]) writes `$REGISTRY_AUTH_FILE` when set, else docker's
    /// `config.json`: it outlives a reboot (the runtime dir does not) and both docker and podman
    /// read it. A podman file earlier in the order still wins for a registry it also holds.
    pub fn from_env() -> Credentials {
        let uid = rustix::process::getuid().as_raw();
        Credentials::from_vars(|name| std::env::var_os(name).filter(|v| !v.is_empty()), uid)
    }

    /// [`Credentials::from_env`] with the environment given by `var` and the user id by `uid`.
    fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Credentials {
        if let Some(file) = var("REGISTRY_AUTH_FILE") {
            return Credentials::with_files(vec![PathBuf::from(file)]);
        }
        let home = var("HOME").map(PathBuf::from);
        let runtime = match var("XDG_RUNTIME_DIR") {
            Some(dir) => PathBuf::from(dir).join("containers/auth.json"),
            None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
        };
        let config = var("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".config")));
        let docker = var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".docker")));
        let mut files = vec![AuthFile::new(runtime)];
        files.extend(config.map(|dir| AuthFile::new(dir.join("containers/auth.json"))));
        let docker = docker.map(|dir| AuthFile::new(dir.join("config.json")));
        let write = docker.is_some().then_some(files.len());
        files.extend(docker);
        Credentials { files, write, helper_path: None }
    }

    /// Explicit files (tests, `--authfile FILE`): looked up in the order given; the first is the
    /// one [`Credentials::save`] writes. A file named `config.json` follows docker's conventions,
    /// any other podman's.
    pub fn with_files(files: Vec<PathBuf>) -> Credentials {
        let write = if files.is_empty() { None } else { Some(0) };
        Credentials { files: files.into_iter().map(AuthFile::new).collect(), write, helper_path: None }
    }

    /// Looks for `docker-credential-*` helpers in `path` (a `PATH`-style list) instead of `$PATH`.
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> Credentials {
        self.helper_path = Some(path.into());
        self
    }

    /// The files, in lookup order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The file [`Credentials::save`] writes, if there is one.
    pub fn write_file(&self) -> Option<&Path> {
        self.write.and_then(|i| self.files.get(i)).map(|f| f.path.as_path())
    }

    /// The credentials for `registry` (a host[:port] such as `127.0.0.1:5000` or `docker.io`; a
    /// URL form or `host/namespace` also works), or `None`.
    pub fn get(&self, registry: &str) -> Result<Option<Auth>> {
        let key = Key::parse_arg(registry)?;
        for file in &self.files {
            if let Some(auth) = self.get_in(file, &key)? {
                return Ok(Some(auth));
            }
        }
        Ok(None)
    }

    /// Saves `auth` for `registry` (login) in the file [`Credentials::write_file`] names: with
    /// the helper it configures for the registry (`credHelpers`, then `credsStore`), else in its
    /// `auths`, replacing every key that names the same registry. Returns where: the file's path
    /// or `docker-credential-NAME`.
    pub fn save(&self, registry: &str, auth: &Auth) -> Result<String> {
        let key = Key::parse_arg(registry)?;
        let file = self.write.and_then(|i| self.files.get(i)).ok_or(CredentialsError::NoAuthFile)?;
        let mut doc = load(&file.path)?;
        if let Some(name) = helpers_for(&file.path, &doc, &key)?.first() {
            return self.save_in_helper(name, file, &key, auth);
        }
        if auth.username.contains(':') {
            return Err(CredentialsError::BadUsername { username: auth.username.clone() });
        }
        put_entry(&file.path, &mut doc, &key, file.flavor, auth)?;
        store(&file.path, &doc)?;
        Ok(file.path.display().to_string())
    }

    /// Removes the credentials for `registry` from every file and helper that has them (logout).
    /// `Ok(false)` if there were none. Empty `auths` entries for it go too.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let key = Key::parse_arg(registry)?;
        let mut erased = BTreeSet::new();
        let mut found = false;
        for file in &self.files {
            found |= self.remove_in(file, &key, &mut erased)?;
        }
        Ok(found)
    }

    /// Removes every registry's credentials from every file (logout --all), and from the helpers
    /// those files name: each `credHelpers` registry, and all that a `credsStore` lists. The
    /// helper settings themselves stay. Returns the registries removed, sorted.
    pub fn remove_all(&self) -> Result<Vec<String>> {
        let mut erased = BTreeSet::new();
        let mut removed = BTreeSet::new();
        for file in &self.files {
            self.remove_all_in(file, &mut erased, &mut removed)?;
        }
        Ok(removed.into_iter().collect())
    }

    /// The credentials `file` holds for `key`: its helpers, then its `auths`.
    fn get_in(&self, file: &AuthFile, key: &Key) -> Result<Option<Auth>> {
        let doc = load(&file.path)?;
        if key.namespace.is_empty() {
            for name in helpers_for(&file.path, &doc, key)? {
                let helper = self.helper(name)?;
                for url in key.helper_urls(file.flavor) {
                    if let Some(auth) = helper.get(&url)? {
                        return Ok(Some(auth));
                    }
                }
            }
        }
        find_entry(&file.path, &doc, key, file.flavor)
    }

    fn save_in_helper(&self, name: &str, file: &AuthFile, key: &Key, auth: &Auth) -> Result<String> {
        if !key.namespace.is_empty() {
            return Err(CredentialsError::NamespaceInHelper { helper: name.to_string(), key: key.to_string() });
        }
        let helper = self.helper(name)?;
        let url = key.helper_urls(file.flavor).swap_remove(0);
        helper.store(&url, auth)?;
        Ok(helper.name)
    }

    /// Removes `key` from `file` and its helpers; `erased` holds the (helper, URL) pairs already
    /// erased, so a helper two files name is asked once.
    fn remove_in(&self, file: &AuthFile, key: &Key, erased: &mut BTreeSet<(String, String)>) -> Result<bool> {
        let mut doc = load(&file.path)?;
        let mut found = false;
        if key.namespace.is_empty() {
            for name in helpers_for(&file.path, &doc, key)? {
                let helper = self.helper(name)?;
                for url in key.helper_urls(file.flavor) {
                    if erased.insert((name.to_string(), url.clone())) {
                        found |= helper.erase(&url)?;
                    }
                }
            }
        }
        let taken = take_entries(&file.path, &mut doc, |k| Key::parse(k) == *key)?;
        if !taken.is_empty() {
            store(&file.path, &doc)?;
        }
        Ok(found || taken.iter().any(|(_, entry)| has_credentials(entry)))
    }

    fn remove_all_in(
        &self,
        file: &AuthFile,
        erased: &mut BTreeSet<(String, String)>,
        removed: &mut BTreeSet<String>,
    ) -> Result<()> {
        let mut doc = load(&file.path)?;
        for (name, url) in helper_entries(&file.path, &doc, file.flavor)? {
            let helper = self.helper(&name)?;
            let urls = match url {
                Some(url) => vec![url],
                None => helper.list()?,
            };
            for url in urls {
                if erased.insert((name.clone(), url.clone())) && helper.erase(&url)? {
                    removed.insert(Key::parse(&url).to_string());
                }
            }
        }
        let taken = take_entries(&file.path, &mut doc, |_| true)?;
        let with_credentials = taken.iter().filter(|(_, entry)| has_credentials(entry));
        removed.extend(with_credentials.map(|(k, _)| Key::parse(k).to_string()));
        if !taken.is_empty() {
            store(&file.path, &doc)?;
        }
        Ok(())
    }

    /// The helper `docker-credential-NAME`, found in the helper path.
    fn helper(&self, name: &str) -> Result<Helper> {
        let program = format!("docker-credential-{name}");
        let search = self.helper_path.clone().or_else(|| std::env::var_os("PATH")).unwrap_or_default();
        std::env::split_paths(&search)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(&program))
            .find(|path| is_executable(path))
            .map(|path| Helper { name: program.clone(), path })
            .ok_or(CredentialsError::HelperMissing { program })
    }
}

/// A registry, or a repository namespace in one, as credentials are keyed: the host (Docker Hub's
/// aliases made `docker.io`) and the namespace (empty for the whole registry).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    host: String,
    namespace: String,
}

impl Key {
    /// Reads a key in any of its forms. A scheme, or a path of `/`, `/v1/` or `/v2/`, is docker's
    /// URL form and names the host alone; any other path is a podman namespace.
    fn parse(text: &str) -> Key {
        let bare = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
        let is_url = bare.is_some();
        let rest = bare.unwrap_or(text);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_matches('/');
        let namespace = if is_url || matches!(path, "" | "v1" | "v2") { "" } else { path };
        let host = match host {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB,
            other => other,
        };
        Key { host: host.to_string(), namespace: namespace.to_string() }
    }

    /// A registry as a caller names it; an empty host is refused.
    fn parse_arg(registry: &str) -> Result<Key> {
        let key = Key::parse(registry.trim());
        if key.host.is_empty() || key.host.contains(char::is_whitespace) {
            return Err(CredentialsError::BadRegistry { registry: registry.to_string() });
        }
        Ok(key)
    }

    /// The whole registry this key is in.
    fn registry(&self) -> Key {
        Key { host: self.host.clone(), namespace: String::new() }
    }

    /// The key `save` writes in a file of `flavor`.
    fn file_key(&self, flavor: Flavor) -> String {
        match (self.host == HUB && self.namespace.is_empty(), flavor) {
            (true, Flavor::Docker) => HUB_DOCKER_KEY.to_string(),
            _ => self.to_string(),
        }
    }

    /// The server URLs a helper may know this registry by, the one `flavor` writes first.
    fn helper_urls(&self, flavor: Flavor) -> Vec<String> {
        match (self.host == HUB, flavor) {
            (true, Flavor::Docker) => vec![HUB_DOCKER_KEY.to_string(), HUB.to_string()],
            (true, Flavor::Podman) => vec![HUB.to_string(), HUB_DOCKER_KEY.to_string()],
            (false, _) => vec![self.host.clone()],
        }
    }

    /// This key, then each enclosing namespace, then the registry: podman's lookup order.
    fn lineage(&self) -> Vec<Key> {
        let mut keys = vec![self.clone()];
        let mut namespace = self.namespace.as_str();
        while let Some((parent, _)) = namespace.rsplit_once('/') {
            keys.push(Key { host: self.host.clone(), namespace: parent.to_string() });
            namespace = parent;
        }
        if !self.namespace.is_empty() {
            keys.push(self.registry());
        }
        keys
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.as_str() {
            "" => f.write_str(&self.host),
            namespace => write!(f, "{}/{namespace}", self.host),
        }
    }
}

/// Reads a credentials file; one that does not exist (or holds only white space) is empty.
fn load(path: &Path) -> Result<Map<String, Value>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(source) => return Err(CredentialsError::Read { path: path.to_path_buf(), source }),
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&text) {
        Ok(Value::Object(doc)) => Ok(doc),
        Ok(_) => Err(malformed(path, "not a JSON object")),
        Err(source) => Err(CredentialsError::Parse { path: path.to_path_buf(), source }),
    }
}

/// Writes a credentials file atomically: a 0600 temporary file beside it (its directory made
/// 0700 when missing), synced, renamed over it. A symlink is followed, so its target is replaced.
fn store(path: &Path, doc: &Map<String, Value>) -> Result<()> {
    let err = |source| CredentialsError::Write { path: path.to_path_buf(), source };
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path).map_err(err)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let mut text = serde_json::to_vec_pretty(doc).map_err(|e| err(io::Error::other(e)))?;
    text.push(b'\n');
    let mut tmp = tempfile::Builder::new().prefix(".auth-").suffix(".tmp").tempfile_in(dir).map_err(err)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o600)).map_err(err)?;
    tmp.write_all(&text).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&target).map_err(|e| err(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

fn malformed(path: &Path, what: impl Into<String>) -> CredentialsError {
    CredentialsError::Malformed { path: path.to_path_buf(), what: what.into() }
}

/// The object `doc[name]`, if present.
fn object<'a>(path: &Path, doc: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Map<String, Value>>> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(malformed(path, format!("\"{name}\" is not an object"))),
    }
}

/// A helper name from a file: a string that cannot reach outside `docker-credential-*`; empty is
/// none.
fn helper_name<'a>(path: &Path, field: &str, value: &'a Value) -> Result<Option<&'a str>> {
    match value {
        Value::Null => Ok(None),
        Value::String(name) if name.is_empty() => Ok(None),
        Value::String(name) if name.contains(['/', '\0']) => {
            Err(CredentialsError::BadHelperName { path: path.to_path_buf(), name: name.clone() })
        }
        Value::String(name) => Ok(Some(name)),
        _ => Err(malformed(path, format!("\"{field}\" names a helper with something not a string"))),
    }
}

/// The helpers a file has for `key`'s registry, the one that wins first: its `credHelpers`
/// entry, then `credsStore`.
fn helpers_for<'a>(path: &Path, doc: &'a Map<String, Value>, key: &Key) -> Result<Vec<&'a str>> {
    let mut names = Vec::new();
    let registry = key.registry();
    let helpers = object(path, doc, "credHelpers")?.into_iter().flatten();
    if let Some((_, value)) = helpers.into_iter().find(|(k, _)| Key::parse(k) == registry) {
        names.extend(helper_name(path, "credHelpers", value)?);
    }
    if let Some(value) = doc.get("credsStore") {
        names.extend(helper_name(path, "credsStore", value)?);
    }
    Ok(names)
}

/// Every helper entry a file names, as (helper, server URL): one per `credHelpers` registry and
/// URL form, and `(credsStore, None)` for all that store holds.
fn helper_entries(path: &Path, doc: &Map<String, Value>, flavor: Flavor) -> Result<Vec<(String, Option<String>)>> {
    let mut entries = Vec::new();
    for (registry, value) in object(path, doc, "credHelpers")?.into_iter().flatten() {
        if let Some(name) = helper_name(path, "credHelpers", value)? {
            let urls = Key::parse(registry).helper_urls(flavor);
            entries.extend(urls.into_iter().map(|url| (name.to_string(), Some(url))));
        }
    }
    if let Some(value) = doc.get("credsStore") {
        entries.extend(helper_name(path, "credsStore", value)?.map(|name| (name.to_string(), None)));
    }
    Ok(entries)
}

/// The credentials in a file's `auths` for `key`: the most specific key first and, for each,
/// the form `flavor` writes before the other forms.
fn find_entry(path: &Path, doc: &Map<String, Value>, key: &Key, flavor: Flavor) -> Result<Option<Auth>> {
    let Some(auths) = object(path, doc, "auths")? else {
        return Ok(None);
    };
    for candidate in key.lineage() {
        let preferred = candidate.file_key(flavor);
        let mut names: Vec<&String> = auths.keys().filter(|k| Key::parse(k) == candidate).collect();
        names.sort_by_key(|name| **name != preferred);
        for name in names {
            if let Some(auth) = decode_entry(path, name, &auths[name])? {
                return Ok(Some(auth));
            }
        }
    }
    Ok(None)
}

/// The string field `name` of an `auths` entry, "" when absent.
fn text<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Whether an `auths` entry holds anything secret.
fn has_credentials(entry: &Value) -> bool {
    ["identitytoken", "auth", "username", "password"].iter().any(|name| !text(entry, name).is_empty())
}

/// The credentials of one `auths` entry: its `identitytoken` (user `<token>`), else its `auth`,
/// else its `username` and `password`; `None` when all are empty.
fn decode_entry(path: &Path, key: &str, entry: &Value) -> Result<Option<Auth>> {
    let token = text(entry, "identitytoken");
    if !token.is_empty() {
        return Ok(Some(Auth { username: TOKEN_USER.to_string(), password: token.to_string() }));
    }
    let auth = text(entry, "auth");
    if !auth.is_empty() {
        let bad = || CredentialsError::BadAuth { path: path.to_path_buf(), key: key.to_string() };
        return decode_auth(auth).map(Some).ok_or_else(bad);
    }
    let (username, password) = (text(entry, "username"), text(entry, "password"));
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Auth { username: username.to_string(), password: password.to_string() }))
}

/// base64 of `user:password` (the password may hold `:`; trailing NULs are dropped, as podman does).
fn decode_auth(auth: &str) -> Option<Auth> {
    let bytes = BASE64.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Auth { username: username.to_string(), password: password.trim_matches('\0').to_string() })
}

/// Takes the `auths` entries whose key `pick` accepts out of a file, returning them.
fn take_entries(
    path: &Path,
    doc: &mut Map<String, Value>,
    mut pick: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, Value)>> {
    let auths = match doc.get_mut("auths") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(auths)) => auths,
        Some(_) => return Err(malformed(path, "\"auths\" is not an object")),
    };
    let names: Vec<String> = auths.keys().filter(|k| pick(k)).cloned().collect();
    Ok(names.into_iter().filter_map(|k| auths.remove(&k).map(|v| (k, v))).collect())
}

/// Puts `auth` in a file's `auths` under the key `flavor` writes for `key`, replacing every other
/// form of that key. Fields of the old entry other than the credentials (`email`, …) stay.
fn put_entry(path: &Path, doc: &mut Map<String, Value>, key: &Key, flavor: Flavor, auth: &Auth) -> Result<()> {
    let name = key.file_key(flavor);
    let mut old = take_entries(path, doc, |k| Key::parse(k) == *key)?;
    old.sort_by_key(|(k, _)| *k != name);
    let mut entry = match old.into_iter().next() {
        Some((_, Value::Object(entry))) => entry,
        _ => Map::new(),
    };
    for field in ["auth", "username", "password", "identitytoken"] {
        entry.remove(field);
    }
    if auth.username == TOKEN_USER {
        entry.insert("identitytoken".into(), auth.password.clone().into());
    } else {
        let pair = format!("{}:{}", auth.username, auth.password);
        entry.insert("auth".into(), base64::engine::general_purpose::STANDARD.encode(pair).into());
    }
    let auths = doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    match auths {
        Value::Object(auths) => {
            auths.insert(name, Value::Object(entry));
            Ok(())
        }
        _ => Err(malformed(path, "\"auths\" is not an object")),
    }
}

/// A `docker-credential-NAME` program, spoken to as docker-credential-helpers' client does:
/// the verb as the only argument, everything else on stdin and stdout.
struct Helper {
    /// `docker-credential-NAME`.
    name: String,
    path: PathBuf,
}

impl Helper {
    /// What the helper holds for `url`; `None` when it says it has nothing.
    fn get(&self, url: &str) -> Result<Option<Auth>> {
        let out = self.run("get", url.as_bytes())?;
        if !out.status.success() {
            return if not_found(&out) { Ok(None) } else { Err(self.failed("get", &out, None)) };
        }
        let reply: Value = serde_json::from_slice(&out.stdout).map_err(|_| self.bad_output("get"))?;
        let (username, password) = (text(&reply, "Username"), text(&reply, "Secret"));
        if username.is_empty() && password.is_empty() {
            return Ok(None);
        }
        Ok(Some(Auth { username: username.to_string(), password: password.to_string() }))
    }

    fn store(&self, url: &str, auth: &Auth) -> Result<()> {
        let input = serde_json::json!({"ServerURL": url, "Username": auth.username, "Secret": auth.password});
        let out = self.run("store", input.to_string().as_bytes())?;
        if !out.status.success() {
            return Err(self.failed("store", &out, Some(&auth.password)));
        }
        Ok(())
    }

    /// Erases what the helper holds for `url`; `false` when it had nothing.
    fn erase(&self, url: &str) -> Result<bool> {
        let out = self.run("erase", url.as_bytes())?;
        match (out.status.success(), not_found(&out)) {
            (true, _) => Ok(true),
            (false, true) => Ok(false),
            (false, false) => Err(self.failed("erase", &out, None)),
        }
    }

    /// The server URLs the helper holds credentials for.
    fn list(&self) -> Result<Vec<String>> {
        let out = self.run("list", b"")?;
        if !out.status.success() {
            return Err(self.failed("list", &out, None));
        }
        match serde_json::from_slice(&out.stdout) {
            Ok(Value::Object(map)) => Ok(map.into_iter().map(|(url, _)| url).collect()),
            _ => Err(self.bad_output("list")),
        }
    }

    /// Runs `NAME verb` with `input` on stdin; stdout and stderr are captured.
    fn run(&self, verb: &'static str, input: &[u8]) -> Result<Output> {
        let err = |source| CredentialsError::HelperRun { program: self.path.clone(), source };
        let mut command = Command::new(&self.path);
        command.arg(verb).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = spawn(&mut command).map_err(err)?;
        let written = child.stdin.take().map_or(Ok(()), |mut stdin| stdin.write_all(input));
        let out = child.wait_with_output().map_err(err)?;
        match written {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(err(e)),
            _ => Ok(out),
        }
    }

    /// A failure, with the first line the helper printed; `secret`, if given, is blanked out, and
    /// a line echoing the protocol's `"Secret"` is withheld.
    fn failed(&self, verb: &'static str, out: &Output, secret: Option<&str>) -> CredentialsError {
        let printed = [&out.stdout, &out.stderr].map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let line = printed.iter().flat_map(|text| text.lines()).map(str::trim).find(|line| !line.is_empty());
        let mut message: String = line.map_or_else(|| out.status.to_string(), |l| l.chars().take(200).collect());
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            message = message.replace(secret, "<redacted>");
        }
        if message.contains("\"Secret\"") {
            message = "(its output is withheld: it holds a secret)".to_string();
        }
        CredentialsError::HelperFailed { program: self.name.clone(), verb, message }
    }

    fn bad_output(&self, verb: &'static str) -> CredentialsError {
        CredentialsError::HelperOutput { program: self.name.clone(), verb }
    }
}

/// Whether a helper's failure is "I have nothing for that server".
fn not_found(out: &Output) -> bool {
    [&out.stdout, &out.stderr].iter().any(|bytes| String::from_utf8_lossy(bytes).contains(NOT_FOUND))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Spawns `command`, retrying briefly on `ETXTBSY`: a program just written (a helper being
/// installed) stays busy while any other thread's fork still holds its write descriptor.
fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A credential helper over one JSON file per server URL in `store-NAME/` beside it; it
    /// appends its arguments to `argv.log` and its environment to `env.log`.
    const HELPER: &str = r#"#!/bin/sh
dir=$(dirname "$0")
printf '%s\n' "$*" >> "$dir/argv.log"
env >> "$dir/env.log"
store="$dir/store-$(basename "$0")"
mkdir -p "$store"
input=$(cat)
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
case "$1" in
get|erase) url=$input ;;
store) url=$(printf '%s' "$input" | field ServerURL) ;;
list) url= ;;
*) echo "unknown verb $1" >&2; exit 2 ;;
esac
file="$store/$(printf '%s' "$url" | od -An -tx1 | tr -d ' \n')"
case "$1" in
get) [ -f "$file" ] || { echo "credentials not found in native keychain"; exit 1; }; cat "$file" ;;
erase) [ -f "$file" ] || { echo "credentials not found in native keychain"; exit 1; }; rm "$file" ;;
store) printf '%s' "$input" > "$file" ;;
list)
  sep=; printf '{'
  for f in "$store"/*; do
    [ -f "$f" ] || continue
    printf '%s"%s":"%s"' "$sep" "$(field ServerURL < "$f")" "$(field Username < "$f")"; sep=,
  done
  printf '}\n' ;;
esac
"#;

    /// A helper that fails every verb, echoing what it was given.
    const ECHO_HELPER: &str = "#!/bin/sh\ncat\nexit 1\n";

    fn auth(username: &str, password: &str) -> Auth {
        Auth { username: username.to_string(), password: password.to_string() }
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn write(path: &Path, json: &Value) {
        fs::write(path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
    }

    /// A temp dir holding one credentials file `name` with `json` in it.
    fn fixture(name: &str, json: Value) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        write(&file, &json);
        (dir, file)
    }

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn install(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A temp dir with the test helpers installed, and credentials reading `files` in it.
    fn with_helpers(files: &[&str]) -> (tempfile::TempDir, Credentials) {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), "strata-test", HELPER);
        install(dir.path(), "strata-test2", HELPER);
        install(dir.path(), "strata-echo", ECHO_HELPER);
        let paths = files.iter().map(|f| dir.path().join(f)).collect();
        let creds = Credentials::with_files(paths).with_helper_path(dir.path());
        (dir, creds)
    }

    #[test]
    fn key_forms_parse_to_host_or_namespace() {
        let key = |host: &str, namespace: &str| Key { host: host.into(), namespace: namespace.into() };
        assert_eq!(Key::parse("127.0.0.1:5000"), key("127.0.0.1:5000", ""));
        assert_eq!(Key::parse("https://h:8443"), key("h:8443", ""));
        assert_eq!(Key::parse("http://h/v2/"), key("h", ""));
        assert_eq!(Key::parse("h:5000/v1/"), key("h:5000", ""));
        assert_eq!(Key::parse("https://index.docker.io/v1/"), key(HUB, ""));
        assert_eq!(Key::parse("registry-1.docker.io"), key(HUB, ""));
        assert_eq!(Key::parse("quay.io/ns/repo"), key("quay.io", "ns/repo"));
        assert_eq!(Key::parse("https://quay.io/ns/repo"), key("quay.io", ""));
        let lineage: Vec<String> = Key::parse("q/a/b").lineage().iter().map(Key::to_string).collect();
        assert_eq!(lineage, ["q/a/b", "q/a", "q"]);
    }

    #[test]
    fn reads_every_key_form() {
        let (_dir, file) = fixture(
            "auth.json",
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": b64("a:1")},
                "https://secure.example:8443": {"auth": b64("b:2")},
                "http://plain.example/v2/": {"auth": b64("c:3")},
                "https://index.docker.io/v1/": {"auth": b64("hub:4")},
                "quay.io/ns/repo": {"auth": b64("ns:5")},
            }}),
        );
        let creds = Credentials::with_files(vec![file]);
        let get = |registry: &str| creds.get(registry).unwrap();
        assert_eq!(get("127.0.0.1:5000"), Some(auth("a", "1")));
        assert_eq!(get("secure.example:8443"), Some(auth("b", "2")));
        assert_eq!(get("plain.example"), Some(auth("c", "3")));
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io", HUB_DOCKER_KEY] {
            assert_eq!(get(hub), Some(auth("hub", "4")), "{hub}");
        }
        assert_eq!(get("quay.io"), None);
        assert_eq!(get("quay.io/ns/repo"), Some(auth("ns", "5")));
        assert_eq!(get("quay.io/ns/repo/sub"), Some(auth("ns", "5")));
        assert_eq!(get("127.0.0.1:5001"), None);
    }

    #[test]
    fn reads_username_password_identitytoken_and_empty_entries() {
        let (_dir, file) = fixture(
            "config.json",
            serde_json::json!({"auths": {
                "fields": {"username": "u", "password": "p"},
                "token": {"auth": b64("u:"), "identitytoken": "tok"},
                "colon": {"auth": b64("u:p:q")},
                "empty-auth": {"auth": ""},
                "empty": {},
                "https://empty": {"auth": ""},
            }}),
        );
        let creds = Credentials::with_files(vec![file]);
        assert_eq!(creds.get("fields").unwrap(), Some(auth("u", "p")));
        assert_eq!(creds.get("token").unwrap(), Some(auth("<token>", "tok")));
        assert_eq!(creds.get("colon").unwrap(), Some(auth("u", "p:q")));
        assert_eq!(creds.get("empty-auth").unwrap(), None);
        assert_eq!(creds.get("empty").unwrap(), None);
    }

    #[test]
    fn bad_auth_names_file_and_key_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let secret = b64("no-colon-hunter2");
        write(&file, &serde_json::json!({"auths": {"h": {"auth": secret}}}));
        let err = Credentials::with_files(vec![file.clone()]).get("h").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, CredentialsError::BadAuth { .. }), "{message}");
        assert!(message.contains(&file.display().to_string()) && message.contains("h"), "{message}");
        assert!(!message.contains(&secret) && !message.contains("hunter2"), "{message}");
    }

    #[test]
    fn missing_file_is_empty_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("none/auth.json");
        let creds = Credentials::with_files(vec![file.clone()]);
        assert_eq!(creds.get("h").unwrap(), None);
        assert!(!creds.remove("h").unwrap());
        assert!(creds.remove_all().unwrap().is_empty());
        assert!(!file.exists() && !dir.path().join("none").exists());
    }

    #[test]
    fn invalid_json_names_file_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        fs::write(&file, "{\"auths\": {\"h\": ").unwrap();
        let creds = Credentials::with_files(vec![file.clone()]);
        let err = creds.get("h").unwrap_err();
        assert!(matches!(err, CredentialsError::Parse { .. }));
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        assert!(creds.save("h", &auth("u", "p")).is_err());
        assert!(creds.remove("h").is_err());
        assert_eq!(fs::read_to_string(&file).unwrap(), "{\"auths\": {\"h\": ");
        fs::write(&file, "[]").unwrap();
        assert!(matches!(creds.get("h"), Err(CredentialsError::Malformed { .. })));
    }

    #[test]
    fn first_file_in_lookup_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        write(&podman, &serde_json::json!({"auths": {"h": {"auth": b64("podman:1")}}}));
        let docker_auths = serde_json::json!({"h": {"auth": b64("docker:2")}, "only-docker": {"auth": b64("d:3")}});
        write(&docker, &serde_json::json!({ "auths": docker_auths }));
        let creds = Credentials::with_files(vec![podman.clone(), docker.clone()]);
        assert_eq!(creds.get("h").unwrap(), Some(auth("podman", "1")));
        assert_eq!(creds.get("only-docker").unwrap(), Some(auth("d", "3")));
        let reversed = Credentials::with_files(vec![docker, podman]);
        assert_eq!(reversed.get("h").unwrap(), Some(auth("docker", "2")));
    }

    fn env_files(vars: &[(&str, &str)], uid: u32) -> (Vec<PathBuf>, Option<PathBuf>) {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v));
        let creds = Credentials::from_vars(lookup, uid);
        (creds.files().map(Path::to_path_buf).collect(), creds.write_file().map(Path::to_path_buf))
    }

    #[test]
    fn from_env_reads_podman_then_docker_and_writes_docker() {
        let (files, write) = env_files(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/r")], 1000);
        let expected = ["/r/containers/auth.json", "/h/.config/containers/auth.json", "/h/.docker/config.json"];
        assert_eq!(files, expected.map(PathBuf::from));
        assert_eq!(write, Some(PathBuf::from("/h/.docker/config.json")));
        let vars = [("HOME", "/h"), ("XDG_CONFIG_HOME", "/c"), ("DOCKER_CONFIG", "/d")];
        let (files, write) = env_files(&vars, 1000);
        let expected = ["/run/containers/1000/auth.json", "/c/containers/auth.json", "/d/config.json"];
        assert_eq!(files, expected.map(PathBuf::from));
        assert_eq!(write, Some(PathBuf::from("/d/config.json")));
    }

    #[test]
    fn from_env_registry_auth_file_is_the_only_file() {
        let (files, write) = env_files(&[("HOME", "/h"), ("REGISTRY_AUTH_FILE", "/a.json")], 0);
        assert_eq!(files, [PathBuf::from("/a.json")]);
        assert_eq!(write, Some(PathBuf::from("/a.json")));
        let (files, write) = env_files(&[], 0);
        assert_eq!(files, [PathBuf::from("/run/containers/0/auth.json")]);
        assert_eq!(write, None);
        let creds = Credentials::from_vars(|_| None, 0);
        assert!(matches!(creds.save("h", &auth("u", "p")), Err(CredentialsError::NoAuthFile)));
    }

    #[test]
    fn save_creates_a_private_file_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/config.json");
        let creds = Credentials::with_files(vec![file.clone()]);
        assert_eq!(creds.save("127.0.0.1:5000", &auth("u", "p:w")).unwrap(), file.display().to_string());
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(dir.path().join("sub")).unwrap().permissions().mode() & 0o7777, 0o700);
        assert_eq!(read(&file), serde_json::json!({"auths": {"127.0.0.1:5000": {"auth": b64("u:p:w")}}}));
        assert_eq!(creds.get("127.0.0.1:5000").unwrap(), Some(auth("u", "p:w")));
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1, "no temporary file left");
        assert!(matches!(creds.save("h", &auth("a:b", "p")), Err(CredentialsError::BadUsername { .. })));
        assert!(matches!(creds.save(" ", &auth("u", "p")), Err(CredentialsError::BadRegistry { .. })));
    }

    #[test]
    fn save_keeps_other_fields_and_replaces_every_form_of_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let other = serde_json::json!({"auth": b64("o:1")});
        let namespaced = serde_json::json!({"auth": b64("n:2")});
        write(
            &file,
            &serde_json::json!({
                "auths": {
                    "other:1": other,
                    "h:5000/ns/repo": namespaced,
                    "http://h:5000/v2/": {"auth": b64("old:0"), "email": "e@x"},
                    "https://h:5000": {"auth": b64("older:0")},
                },
                "psFormat": "table",
                "proxies": {"default": {"httpProxy": "http://p:3128"}},
            }),
        );
        Credentials::with_files(vec![file.clone()]).save("h:5000", &auth("u", "p")).unwrap();
        let expected = serde_json::json!({
            "auths": {
                "other:1": other,
                "h:5000/ns/repo": namespaced,
                "h:5000": {"auth": b64("u:p"), "email": "e@x"},
            },
            "psFormat": "table",
            "proxies": {"default": {"httpProxy": "http://p:3128"}},
        });
        assert_eq!(read(&file), expected);
    }

    #[test]
    fn save_writes_docker_hub_as_each_tool_does() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        let podman = dir.path().join("auth.json");
        write(&docker, &serde_json::json!({"auths": {"index.docker.io": {"auth": b64("old:0")}}}));
        Credentials::with_files(vec![docker.clone()]).save("docker.io", &auth("u", "p")).unwrap();
        assert_eq!(read(&docker), serde_json::json!({"auths": {HUB_DOCKER_KEY: {"auth": b64("u:p")}}}));
        Credentials::with_files(vec![podman.clone()]).save("index.docker.io", &auth("u", "p")).unwrap();
        assert_eq!(read(&podman), serde_json::json!({"auths": {"docker.io": {"auth": b64("u:p")}}}));
        let namespaced = Credentials::with_files(vec![podman.clone()]);
        namespaced.save("quay.io/ns", &auth("n", "s")).unwrap();
        assert_eq!(namespaced.get("quay.io/ns/repo").unwrap(), Some(auth("n", "s")));
        assert_eq!(namespaced.get("quay.io").unwrap(), None);
    }

    #[test]
    fn identity_token_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let creds = Credentials::with_files(vec![file.clone()]);
        creds.save("h", &auth("<token>", "tok")).unwrap();
        assert_eq!(read(&file), serde_json::json!({"auths": {"h": {"identitytoken": "tok"}}}));
        assert_eq!(creds.get("h").unwrap(), Some(auth("<token>", "tok")));
    }

    #[test]
    fn remove_takes_the_registry_out_of_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        write(&podman, &serde_json::json!({"auths": {"h": {"auth": b64("a:1")}, "k": {"auth": b64("k:2")}}}));
        write(&docker, &serde_json::json!({"auths": {"https://h/v1/": {"auth": b64("b:2")}}, "psFormat": "x"}));
        let creds = Credentials::with_files(vec![podman.clone(), docker.clone()]);
        assert!(creds.remove("h").unwrap());
        assert_eq!(creds.get("h").unwrap(), None);
        assert_eq!(read(&podman), serde_json::json!({"auths": {"k": {"auth": b64("k:2")}}}));
        assert_eq!(read(&docker), serde_json::json!({"auths": {}, "psFormat": "x"}));
        assert!(!creds.remove("h").unwrap());
        write(&podman, &serde_json::json!({"auths": {"e": {}}}));
        assert!(!creds.remove("e").unwrap(), "an empty entry is no credentials");
        assert_eq!(read(&podman), serde_json::json!({"auths": {}}));
    }

    #[test]
    fn remove_all_empties_auths_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        let auths = serde_json::json!({"q/ns": {"auth": b64("a:1")}, "empty": {}, "docker.io": {"auth": b64("b:2")}});
        write(&podman, &serde_json::json!({ "auths": auths }));
        let auths = serde_json::json!({HUB_DOCKER_KEY: {"auth": b64("c:3")}, "http://h:1/v2/": {"auth": b64("d:4")}});
        write(&docker, &serde_json::json!({"auths": auths, "detachKeys": "ctrl-x"}));
        let creds = Credentials::with_files(vec![podman.clone(), docker.clone()]);
        assert_eq!(creds.remove_all().unwrap(), ["docker.io", "h:1", "q/ns"]);
        assert_eq!(read(&podman), serde_json::json!({"auths": {}}));
        assert_eq!(read(&docker), serde_json::json!({"auths": {}, "detachKeys": "ctrl-x"}));
        assert!(creds.remove_all().unwrap().is_empty());
    }

    #[test]
    fn debug_redacts_the_password() {
        let text = format!("{:?}", auth("u", "hunter2"));
        assert!(text.contains("\"u\"") && text.contains("<redacted>") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn creds_store_saves_gets_and_removes() {
        let (dir, creds) = with_helpers(&["config.json"]);
        let file = dir.path().join("config.json");
        write(&file, &serde_json::json!({"credsStore": "strata-test", "auths": {}}));
        let saved = creds.save("docker.io", &auth("u", "s3cret")).unwrap();
        assert_eq!(saved, "docker-credential-strata-test");
        assert_eq!(read(&file), serde_json::json!({"credsStore": "strata-test", "auths": {}}));
        assert_eq!(creds.get("index.docker.io").unwrap(), Some(auth("u", "s3cret")));
        let helper = creds.helper("strata-test").unwrap();
        assert_eq!(helper.list().unwrap(), [HUB_DOCKER_KEY]);
        assert!(creds.remove("docker.io").unwrap());
        assert_eq!(creds.get("docker.io").unwrap(), None);
        assert!(!creds.remove("docker.io").unwrap());
        assert!(helper.list().unwrap().is_empty());
    }

    #[test]
    fn cred_helpers_win_over_creds_store_and_auths() {
        let (dir, creds) = with_helpers(&["auth.json"]);
        let file = dir.path().join("auth.json");
        write(&file, &serde_json::json!({"auths": {"h:1": {"auth": b64("file:0")}}}));
        assert_eq!(creds.get("h:1").unwrap(), Some(auth("file", "0")));
        creds.helper("strata-test").unwrap().store("h:1", &auth("store", "1")).unwrap();
        creds.helper("strata-test2").unwrap().store("h:1", &auth("helper", "2")).unwrap();
        let auths = serde_json::json!({"h:1": {"auth": b64("file:0")}});
        write(&file, &serde_json::json!({"auths": auths, "credsStore": "strata-test"}));
        assert_eq!(creds.get("h:1").unwrap(), Some(auth("store", "1")));
        let helpers = serde_json::json!({"https://h:1": "strata-test2"});
        write(&file, &serde_json::json!({"auths": auths, "credsStore": "strata-test", "credHelpers": helpers}));
        assert_eq!(creds.get("h:1").unwrap(), Some(auth("helper", "2")));
        assert_eq!(creds.save("h:1", &auth("new", "3")).unwrap(), "docker-credential-strata-test2");
        assert_eq!(creds.get("h:1").unwrap(), Some(auth("new", "3")));
        let err = creds.save("h:1/ns", &auth("n", "4")).unwrap_err();
        assert!(matches!(err, CredentialsError::NamespaceInHelper { .. }), "{err}");
    }

    #[test]
    fn helper_secret_travels_only_on_stdin_and_stdout() {
        let (dir, creds) = with_helpers(&["auth.json"]);
        write(&dir.path().join("auth.json"), &serde_json::json!({"credsStore": "strata-test"}));
        creds.save("h:1", &auth("u", "s3cret-in-argv?")).unwrap();
        assert_eq!(creds.get("h:1").unwrap(), Some(auth("u", "s3cret-in-argv?")));
        assert!(creds.remove("h:1").unwrap());
        let argv = fs::read_to_string(dir.path().join("argv.log")).unwrap();
        assert_eq!(argv, "store\nget\nerase\n");
        let env = fs::read_to_string(dir.path().join("env.log")).unwrap();
        assert!(!env.contains("s3cret"));
    }

    #[test]
    fn helper_failures_name_the_helper_and_keep_the_secret() {
        let (dir, creds) = with_helpers(&["auth.json"]);
        let file = dir.path().join("auth.json");
        write(&file, &serde_json::json!({"credsStore": "strata-echo"}));
        let err = creds.save("h", &auth("u", "hunter2")).unwrap_err().to_string();
        assert!(err.contains("docker-credential-strata-echo store failed") && !err.contains("hunter2"), "{err}");
        write(&file, &serde_json::json!({"credsStore": "absent"}));
        let err = creds.get("h").unwrap_err();
        assert!(matches!(err, CredentialsError::HelperMissing { .. }));
        assert!(err.to_string().contains("docker-credential-absent"), "{err}");
        write(&file, &serde_json::json!({"credsStore": "../bin/sh"}));
        assert!(matches!(creds.get("h"), Err(CredentialsError::BadHelperName { .. })));
    }

    #[test]
    fn remove_all_erases_what_the_helpers_hold() {
        let (dir, creds) = with_helpers(&["auth.json"]);
        let file = dir.path().join("auth.json");
        let doc = serde_json::json!({
            "credHelpers": {"h:1": "strata-test2"},
            "credsStore": "strata-test",
            "auths": {"plain:2": {"auth": b64("p:2")}},
        });
        write(&file, &doc);
        creds.save("h:1", &auth("a", "1")).unwrap();
        creds.save("other:3", &auth("b", "3")).unwrap();
        assert_eq!(creds.remove_all().unwrap(), ["h:1", "other:3", "plain:2"]);
        assert_eq!(creds.get("h:1").unwrap(), None);
        assert_eq!(creds.get("other:3").unwrap(), None);
        let kept =
            serde_json::json!({"credHelpers": {"h:1": "strata-test2"}, "credsStore": "strata-test", "auths": {}});
        assert_eq!(read(&file), kept);
    }
}
