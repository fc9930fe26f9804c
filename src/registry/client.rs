//! A client of one registry (distribution-spec v1.1 over ureq and rustls): the `/v2/` check,
//! authentication (anonymous, Basic, Bearer tokens per scope, renewed on 401), retries with
//! backoff for what the network or the registry broke, redirects followed without credentials
//! to another host, and each endpoint the pull and push code needs.
//!
//! Every method returns the registry's answer mapped to a [`RegistryError`] that names what
//! was asked; nothing here prints or logs a credential.

use std::io::Read;
use std::thread::sleep;
use std::time::Duration;

use parking_lot::Mutex;
use ureq::http::{self, Method, StatusCode};
use ureq::{Agent, Body, SendBody};

use super::auth::{self, Challenge, TokenResponse, Tokens};
use super::credentials::Auth;
use super::error::{RegistryError, Result};
use super::reference::{DOCKER_HUB, api_host};
use super::tls::{self, TlsOptions};
use crate::image::digest::{Digest, Mismatch};
use crate::image::spec::MediaType;

/// An HTTP response with its body still to read.
pub type Response = http::Response<Body>;

/// Tries of a request that failed for a transient reason, and the first pause between them.
const TRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// How long the first contact may take.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest manifest or index accepted (distribution's own limit is 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// Media types asked for when fetching a manifest, most wanted first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A connection to one registry.
pub struct Client {
    /// host[:port] requests go to.
    host: String,
    /// `https://host` or `http://host`.
    base: String,
    agent: Agent,
    creds: Option<Auth>,
    challenge: Mutex<Challenge>,
    tokens: Tokens,
    /// Held while a token is fetched.
    fetching: Mutex<()>,
}

/// One request to make.
struct Req<'a> {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a [u8]>,
    /// The token scopes it needs (space separated when several).
    scopes: String,
    /// A limit for the whole exchange (the `/v2/` check: a server that never answers).
    timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    fn new(method: Method, url: String, scopes: String) -> Req<'a> {
        Req { method, url, headers: Vec::new(), body: None, scopes, timeout: None }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }
}

/// Where an upload stands: the URL to send the next part to, and how many bytes the registry has.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The upload's URL (absolute).
    pub location: String,
    /// Bytes received so far.
    pub offset: u64,
}

/// What asking for a cross-repository mount did.
pub enum Mounted {
    /// The blob is in the repository now.
    Yes,
    /// The registry started an upload instead.
    No(Upload),
}

impl Client {
    /// Connects to `host` (host[:port]): checks `GET /v2/` (over HTTPS, or plain HTTP where
    /// [`tls::http_allowed`]) and learns how it wants to be authenticated.
    pub fn connect(host: &str, tls_opts: &TlsOptions, creds: Option<Auth>) -> Result<Client> {
        let agent: Agent = Agent::config_builder()
            .tls_config(tls::config(tls_opts, host)?)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut client = Client {
            host: host.to_string(),
            base: format!("https://{host}"),
            agent,
            creds,
            challenge: Mutex::new(Challenge::None),
            tokens: Tokens::default(),
            fetching: Mutex::new(()),
        };
        let resp = match client.ping() {
            // Plain HTTP where allowed; if that is not a registry either, the TLS error stands
            // (an HTTPS registry answers a plain request with 400).
            // A certificate that failed to verify stays the answer unless plain HTTP finds a
            // registry; a server that broke the handshake off may simply speak plain HTTP.
            Err(e @ (RegistryError::Tls { .. } | RegistryError::Connect { .. }))
                if tls::http_allowed(tls_opts, host) =>
            {
                client.base = format!("http://{host}");
                match client.ping() {
                    Ok(r) if matches!(r.status().as_u16(), 200..=299 | 401) => r,
                    Ok(r) if matches!(e, RegistryError::Connect { .. }) => r,
                    _ => return Err(e),
                }
            }
            r => r?,
        };
        match resp.status().as_u16() {
            200..=299 => {}
            401 => *client.challenge.lock() = challenge_of(&resp).unwrap_or(Challenge::Basic),
            status => return Err(RegistryError::NotV2 { host: host.to_string(), status }),
        }
        Ok(client)
    }

    /// `GET /v2/`, once, within [`PING_TIMEOUT`].
    fn ping(&self) -> Result<Response> {
        let mut req = Req::new(Method::GET, format!("{}/v2/", self.base), String::new());
        req.timeout = Some(PING_TIMEOUT);
        self.raw(&req, None)
    }

    /// The host requests go to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks that the credentials are accepted (`login`): `GET /v2/` with them, and for token
    /// auth a token fetched with them.
    pub fn check_login(&self) -> Result<()> {
        let challenge = self.challenge.lock().clone();
        if let Challenge::Bearer { .. } = challenge {
            self.fetch_token(&challenge, "")?;
            return Ok(());
        }
        let resp = self.send(Req::new(Method::GET, format!("{}/v2/", self.base), String::new()))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(self.error_of(resp, "GET", "/v2/", "")),
        }
    }

    /// A reference as users write it, for messages (`host:5000/a/b:tag`, `busybox:1`).
    fn reference(&self, repository: &str, object: &str) -> String {
        let mut r = if self.host == api_host(DOCKER_HUB) {
            repository.strip_prefix("library/").unwrap_or(repository).to_string()
        } else {
            format!("{}/{repository}", self.host)
        };
        if !object.is_empty() {
            r.push(if object.contains(':') && object.len() > 64 { '@' } else { ':' });
            r.push_str(object);
        }
        r
    }

    fn url(&self, repository: &str, rest: &str) -> String {
        format!("{}/v2/{repository}/{rest}", self.base)
    }

    /// A manifest or index by tag or digest: its bytes as served, media type and digest (checked
    /// against the digest asked for and the one the registry names).
    pub fn manifest(&self, repository: &str, object: &str) -> Result<(Vec<u8>, MediaType, Digest)> {
        let url = self.url(repository, &format!("manifests/{object}"));
        let req = Req::new(Method::GET, url.clone(), auth::pull_scope(repository)).header("Accept", MANIFEST_ACCEPT);
        let mut resp = self.send(req)?;
        let reference = self.reference(repository, object);
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(self.not_found(resp, &reference)),
            _ => return Err(self.error_of(resp, "GET", &url, repository)),
        }
        let media_type = header(&resp, "content-type").map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let named = header(&resp, "docker-content-digest");
        let bytes = read_limited(&mut resp, MANIFEST_LIMIT, &url)?;
        let digest = match object.parse::<Digest>() {
            Ok(d) => d,
            Err(_) => named.and_then(|n| n.parse().ok()).unwrap_or_else(|| Digest::sha256_of(&bytes)),
        };
        let actual = digest.of_same_kind(&bytes);
        if actual != digest {
            return Err(RegistryError::Mismatch(Mismatch {
                what: format!("manifest {reference}"),
                expected: digest,
                expected_size: bytes.len() as u64,
                actual,
                actual_size: bytes.len() as u64,
            }));
        }
        let media_type = match media_type {
            Some(t) if !t.is_empty() && t != "application/json" && t != "text/plain" => MediaType::from(t),
            _ => sniff_media_type(&bytes),
        };
        Ok((bytes, media_type, digest))
    }

    /// A blob's bytes from `offset` on (`Range`), following redirects (credentials only to this
    /// host). Returns the body and where it starts: `offset` if the registry honoured the range,
    /// 0 if it sent the whole blob.
    pub fn blob(&self, repository: &str, digest: &Digest, offset: u64) -> Result<(Response, u64)> {
        let mut url = self.url(repository, &format!("blobs/{digest}"));
        for _ in 0..8 {
            let mut req = Req::new(Method::GET, url.clone(), auth::pull_scope(repository));
            if offset > 0 {
                req = req.header("Range", format!("bytes={offset}-"));
            }
            let resp = if same_host(&url, &self.base) { self.send(req)? } else { self.send_anonymous(req)? };
            match resp.status().as_u16() {
                200 => return Ok((resp, 0)),
                206 => return Ok((resp, offset)),
                301 | 302 | 303 | 307 | 308 => {
                    let Some(loc) = header(&resp, "location") else {
                        return Err(self.protocol(&url, "a redirect without Location"));
                    };
                    url = resolve(&url, &loc);
                }
                416 => return self.blob(repository, digest, 0),
                404 => {
                    return Err(RegistryError::Http {
                        method: "GET".into(),
                        url: strip_query(&url),
                        status: 404,
                        message: format!("blob unknown: {digest} is not in {repository}"),
                    });
                }
                _ => return Err(self.error_of(resp, "GET", &url, repository)),
            }
        }
        Err(self.protocol(&url, "too many redirects"))
    }

    /// Bytes `start..end` of a blob (`Range`), for reading a part of a layer in place: the
    /// registry must honour the range (`206`) and send exactly those bytes.
    pub fn blob_range(&self, repository: &str, digest: &Digest, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut url = self.url(repository, &format!("blobs/{digest}"));
        for _ in 0..8 {
            let req = Req::new(Method::GET, url.clone(), auth::pull_scope(repository))
                .header("Range", format!("bytes={start}-{}", end - 1));
            let mut resp = if same_host(&url, &self.base) { self.send(req)? } else { self.send_anonymous(req)? };
            match resp.status().as_u16() {
                206 => {
                    let what = format!("bytes {start}-{} of blob {digest}", end - 1);
                    let bytes = read_limited(&mut resp, end - start, &what)?;
                    if bytes.len() as u64 != end - start {
                        return Err(
                            self.protocol(&url, &format!("{} bytes for a range of {}", bytes.len(), end - start))
                        );
                    }
                    return Ok(bytes);
                }
                200 => return Err(self.protocol(&url, "the registry does not serve ranges of blobs")),
                301 | 302 | 303 | 307 | 308 => {
                    let Some(loc) = header(&resp, "location") else {
                        return Err(self.protocol(&url, "a redirect without Location"));
                    };
                    url = resolve(&url, &loc);
                }
                _ => return Err(self.error_of(resp, "GET", &url, repository)),
            }
        }
        Err(self.protocol(&url, "too many redirects"))
    }

    /// Whether the repository has the blob (`HEAD`).
    pub fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let resp = self.send(Req::new(Method::HEAD, url.clone(), auth::push_scope(repository)))?;
        match resp.status().as_u16() {
            200..=299 | 307 => Ok(true),
            404 => Ok(false),
            _ => Err(self.error_of(resp, "HEAD", &url, repository)),
        }
    }

    /// Asks the registry to mount `digest` from repository `from` (same registry) into
    /// `repository`; starts an upload when it will not.
    pub fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<Mounted> {
        let url = self.url(repository, &format!("blobs/uploads/?mount={digest}&from={from}"));
        let scopes = format!("{} {}", auth::push_scope(repository), auth::pull_scope(from));
        let resp = self.send(Req::new(Method::POST, url.clone(), scopes).body(b""))?;
        match resp.status().as_u16() {
            201 => Ok(Mounted::Yes),
            202 => Ok(Mounted::No(self.upload_of(&resp, &url)?)),
            _ => Err(self.error_of(resp, "POST", &url, repository)),
        }
    }

    /// Starts an upload.
    pub fn start_upload(&self, repository: &str) -> Result<Upload> {
        let url = self.url(repository, "blobs/uploads/");
        let resp = self.send(Req::new(Method::POST, url.clone(), auth::push_scope(repository)).body(b""))?;
        match resp.status().as_u16() {
            202 => self.upload_of(&resp, &url),
            _ => Err(self.error_of(resp, "POST", &url, repository)),
        }
    }

    /// Sends one chunk at the upload's offset (`PATCH` with `Content-Range`).
    pub fn upload_chunk(&self, repository: &str, up: &Upload, chunk: &[u8]) -> Result<Upload> {
        let end = up.offset + chunk.len() as u64;
        let req = Req::new(Method::PATCH, up.location.clone(), auth::push_scope(repository))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", up.offset, end.saturating_sub(1)))
            .body(chunk);
        let resp = self.send_once(&req)?;
        match resp.status().as_u16() {
            202 => Ok(Upload { location: self.upload_of(&resp, &up.location)?.location, offset: end }),
            _ => Err(self.error_of(resp, "PATCH", &up.location, repository)),
        }
    }

    /// How much of an upload the registry has (to resume it).
    pub fn upload_status(&self, repository: &str, up: &Upload) -> Result<Upload> {
        let resp = self.send(Req::new(Method::GET, up.location.clone(), auth::push_scope(repository)))?;
        match resp.status().as_u16() {
            204 | 202 => self.upload_of(&resp, &up.location),
            _ => Err(self.error_of(resp, "GET", &up.location, repository)),
        }
    }

    /// Ends an upload: the registry checks the digest and makes the blob.
    pub fn finish_upload(&self, repository: &str, up: &Upload, digest: &Digest) -> Result<()> {
        let sep = if up.location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={digest}", up.location);
        let req = Req::new(Method::PUT, url.clone(), auth::push_scope(repository))
            .header("Content-Type", "application/octet-stream")
            .body(b"");
        let resp = self.send_once(&req)?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(self.error_of(resp, "PUT", &url, repository)),
        }
    }

    /// Puts a manifest under `object` (a tag or its digest); returns the digest the registry gave it.
    pub fn put_manifest(&self, repository: &str, object: &str, media_type: &MediaType, bytes: &[u8]) -> Result<Digest> {
        let url = self.url(repository, &format!("manifests/{object}"));
        let req = Req::new(Method::PUT, url.clone(), auth::push_scope(repository))
            .header("Content-Type", media_type.as_str())
            .body(bytes);
        let resp = self.send(req)?;
        match resp.status().as_u16() {
            200..=202 => {
                let ours = Digest::sha256_of(bytes);
                match header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
                    Some(theirs) if theirs != ours => Err(self.protocol(
                        &url,
                        &format!("the registry says the manifest is {theirs}, but its bytes are {ours}"),
                    )),
                    _ => Ok(ours),
                }
            }
            _ => Err(self.error_of(resp, "PUT", &url, repository)),
        }
    }

    /// Every tag of a repository (following `Link` pages).
    pub fn tags(&self, repository: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(repository, "tags/list?n=1000");
        let mut out = Vec::new();
        loop {
            let mut resp = self.send(Req::new(Method::GET, url.clone(), auth::pull_scope(repository)))?;
            match resp.status().as_u16() {
                200 => {}
                404 => return Err(self.not_found(resp, &self.reference(repository, ""))),
                _ => return Err(self.error_of(resp, "GET", &url, repository)),
            }
            let next = header(&resp, "link").and_then(|l| next_link(&l)).map(|n| resolve(&url, &n));
            let bytes = read_limited(&mut resp, MANIFEST_LIMIT, &url)?;
            let list: TagList = serde_json::from_slice(&bytes).map_err(|e| self.protocol(&url, &e.to_string()))?;
            out.extend(list.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
    }

    fn upload_of(&self, resp: &Response, url: &str) -> Result<Upload> {
        let Some(loc) = header(resp, "location") else {
            return Err(self.protocol(url, "an upload answer without Location"));
        };
        // `Range: 0-N` is what the registry has; distribution says `0-0` for none at all (and,
        // ambiguously, for one byte: then that byte is sent again and the registry decides).
        let offset = header(resp, "range")
            .and_then(|r| r.rsplit('-').next().and_then(|n| n.trim().parse::<u64>().ok()))
            .map(|end| if end == 0 { 0 } else { end + 1 })
            .unwrap_or(0);
        Ok(Upload { location: resolve(url, &loc), offset })
    }

    /// Sends with authentication, retrying transient failures.
    fn send(&self, req: Req<'_>) -> Result<Response> {
        self.with_retries(|| self.send_once(&req))
    }

    fn send_anonymous(&self, req: Req<'_>) -> Result<Response> {
        self.with_retries(|| self.raw(&req, None))
    }

    fn with_retries(&self, mut f: impl FnMut() -> Result<Response>) -> Result<Response> {
        let mut pause = FIRST_PAUSE;
        for _ in 1..TRIES {
            match f() {
                Ok(r) if !matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => return Ok(r),
                Err(e) if !e.is_transient() => return Err(e),
                _ => {}
            }
            sleep(pause);
            pause *= 2;
        }
        f()
    }

    /// Sends with authentication once (chunks, which must not go twice without asking the
    /// registry where it stands).
    fn send_once(&self, req: &Req<'_>) -> Result<Response> {
        let challenge = self.challenge.lock().clone();
        let authorization = self.authorization(&challenge, &req.scopes)?;
        let resp = self.raw(req, authorization.as_deref())?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // Refused: learn the challenge this answer carries, renew the token once and try again.
        let Some(fresh) = challenge_of(&resp) else { return Ok(resp) };
        *self.challenge.lock() = fresh.clone();
        let retry = match &fresh {
            Challenge::Bearer { .. } => {
                self.tokens.forget(&req.scopes);
                Some(self.bearer(&fresh, &req.scopes)?)
            }
            Challenge::Basic if authorization.is_none() => self.creds.as_ref().map(auth::basic),
            _ => None,
        };
        match retry {
            Some(a) => self.raw(req, Some(&a)),
            None => Ok(resp),
        }
    }

    /// The `Authorization` header for a request under `challenge`.
    fn authorization(&self, challenge: &Challenge, scopes: &str) -> Result<Option<String>> {
        Ok(match challenge {
            Challenge::None => None,
            Challenge::Basic => self.creds.as_ref().map(auth::basic),
            Challenge::Bearer { .. } => Some(self.bearer(challenge, scopes)?),
        })
    }

    fn bearer(&self, challenge: &Challenge, scopes: &str) -> Result<String> {
        if let Some(t) = self.tokens.get(scopes) {
            return Ok(format!("Bearer {t}"));
        }
        // One fetch at a time: threads that missed the cache together use the first one's token.
        let _fetching = self.fetching.lock();
        if let Some(t) = self.tokens.get(scopes) {
            return Ok(format!("Bearer {t}"));
        }
        let answer = self.fetch_token(challenge, scopes)?;
        match self.tokens.put(scopes, &answer) {
            Some(t) => Ok(format!("Bearer {t}")),
            None => Err(self.protocol("token", "the token server answered without a token")),
        }
    }

    /// `GET realm?service=…&scope=…`, with the credentials as Basic auth when there are any.
    fn fetch_token(&self, challenge: &Challenge, scopes: &str) -> Result<TokenResponse> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Err(self.protocol("token", "no Bearer challenge"));
        };
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        for s in scopes.split(' ').filter(|s| !s.is_empty()) {
            query.push(format!("scope={}", encode(s)));
        }
        if let Some(c) = &self.creds {
            query.push(format!("account={}", encode(&c.username)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() { realm.clone() } else { format!("{realm}{sep}{}", query.join("&")) };
        let authorization = self.creds.as_ref().map(auth::basic);
        let mut resp = self
            .with_retries(|| self.raw(&Req::new(Method::GET, url.clone(), String::new()), authorization.as_deref()))?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                let message = error_message(&mut resp).unwrap_or_else(|| "incorrect username or password".into());
                return Err(RegistryError::Unauthorized { host: self.host.clone(), message });
            }
            _ => return Err(self.error_of(resp, "GET", realm, "")),
        }
        let bytes = read_limited(&mut resp, 1 << 20, realm)?;
        serde_json::from_slice(&bytes).map_err(|e| self.protocol(realm, &format!("token answer: {e}")))
    }

    /// One HTTP exchange, no retries.
    fn raw(&self, req: &Req<'_>, authorization: Option<&str>) -> Result<Response> {
        let mut b = http::Request::builder().method(req.method.clone()).uri(&req.url);
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = authorization {
            b = b.header("Authorization", a);
        }
        let built = b.body(()).map_err(|e| self.protocol(&req.url, &e.to_string()))?;
        let built = match req.timeout {
            Some(t) => self.agent.configure_request(built).timeout_global(Some(t)).build(),
            None => built,
        };
        let sent = match req.body {
            Some(bytes) => self.agent.run(built.map(|_| bytes)),
            None => self.agent.run(built.map(|_| SendBody::none())),
        };
        sent.map_err(|e| transport_error(&self.host, e))
    }

    /// The error a non-success answer means.
    fn error_of(&self, mut resp: Response, method: &str, url: &str, repository: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let insufficient = matches!(challenge_of(&resp), Some(Challenge::Bearer { error: Some(ref e), .. }) if e == "insufficient_scope");
        let codes = error_codes(&mut resp);
        let message = codes.first().map(|(_, m)| m.clone()).unwrap_or_else(|| status_text(status));
        let has = |c: &str| codes.iter().any(|(code, _)| code == c);
        let bearer = matches!(*self.challenge.lock(), Challenge::Bearer { .. });
        match status {
            // With token auth, a 401 for a fresh token got with credentials means they do not
            // reach this repository; with Basic auth it means they are wrong.
            401 if insufficient || (bearer && self.creds.is_some() && !repository.is_empty() && method != "GET") => {
                RegistryError::Denied { repository: repository.to_string(), message }
            }
            401 => RegistryError::Unauthorized { host: self.host.clone(), message },
            403 => RegistryError::Denied { repository: repository.to_string(), message },
            _ if has("DENIED") => RegistryError::Denied { repository: repository.to_string(), message },
            _ => RegistryError::Http { method: method.to_string(), url: strip_query(url), status, message },
        }
    }

    fn not_found(&self, mut resp: Response, reference: &str) -> RegistryError {
        let codes = error_codes(&mut resp);
        if codes.iter().any(|(c, _)| c == "NAME_UNKNOWN") {
            RegistryError::NameUnknown { reference: reference.to_string() }
        } else {
            RegistryError::ManifestUnknown { reference: reference.to_string() }
        }
    }

    fn protocol(&self, what: &str, detail: &str) -> RegistryError {
        RegistryError::Protocol { what: format!("{}: {}", self.host, strip_query(what)), detail: detail.to_string() }
    }
}

/// The challenge a 401 carries.
fn challenge_of(resp: &Response) -> Option<Challenge> {
    resp.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).find_map(Challenge::parse)
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Reads a body of at most `limit` bytes.
pub fn read_limited(resp: &mut Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut reader = resp.body_mut().as_reader().take(limit + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Connect { host: strip_query(what), detail: format!("reading the answer: {e}") })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::Protocol {
            what: strip_query(what),
            detail: format!("answer larger than {limit} bytes"),
        });
    }
    Ok(out)
}

/// `(code, message)` of a distribution error body `{"errors":[{"code","message","detail"}]}`.
fn error_codes(resp: &mut Response) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let mut bytes = Vec::new();
    let _ = resp.body_mut().as_reader().take(64 << 10).read_to_end(&mut bytes);
    serde_json::from_slice::<Errors>(&bytes)
        .map(|e| e.errors.into_iter().map(|x| (x.code, x.message)).collect())
        .unwrap_or_default()
}

fn error_message(resp: &mut Response) -> Option<String> {
    error_codes(resp).into_iter().next().map(|(_, m)| m).filter(|m| !m.is_empty())
}

fn status_text(status: u16) -> String {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_lowercase()
}

/// Maps a transport failure to one line naming the host.
fn transport_error(host: &str, e: ureq::Error) -> RegistryError {
    let host = host.to_string();
    match e {
        ureq::Error::HostNotFound => RegistryError::UnknownHost { host },
        ureq::Error::Rustls(e) => RegistryError::Tls { host, detail: e.to_string() },
        ureq::Error::Tls(m) => RegistryError::Tls { host, detail: m.to_string() },
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            RegistryError::Connect { host, detail: "connection refused (is the registry running?)".into() }
        }
        // rustls' failures come wrapped in I/O errors.
        ureq::Error::Io(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
            RegistryError::Tls { host, detail: e.get_ref().map(|i| i.to_string()).unwrap_or_default() }
        }
        // The system resolver's failures come as I/O errors.
        ureq::Error::Io(e) if e.to_string().contains("lookup address") => RegistryError::UnknownHost { host },
        ureq::Error::Io(e) => RegistryError::Connect { host, detail: e.to_string() },
        ureq::Error::Timeout(t) => RegistryError::Connect { host, detail: format!("timed out ({t})") },
        ureq::Error::ConnectionFailed => RegistryError::Connect { host, detail: "connection failed".into() },
        ureq::Error::Protocol(p) => RegistryError::Connect { host, detail: format!("bad HTTP answer: {p}") },
        other => RegistryError::Connect { host, detail: other.to_string() },
    }
}

/// A manifest's media type from its own `mediaType` field (or its shape).
fn sniff_media_type(bytes: &[u8]) -> MediaType {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe { media_type: Some(m), .. }) => MediaType::from(m),
        Ok(Probe { schema_version: Some(1), .. }) => {
            MediaType::from("application/vnd.docker.distribution.manifest.v1+json".to_string())
        }
        Ok(Probe { manifests: Some(_), .. }) => MediaType::OciIndex,
        _ => MediaType::OciManifest,
    }
}

/// `url` resolved against `base` (absolute, absolute-path or relative).
fn resolve(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    if url.starts_with('/') {
        return format!("{}{url}", &base[..host_end]);
    }
    let dir_end = base[..base.find('?').unwrap_or(base.len())].rfind('/').unwrap_or(host_end);
    format!("{}/{url}", &base[..dir_end.max(host_end)])
}

fn origin(url: &str) -> &str {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(url.len());
    &url[..end]
}

fn same_host(url: &str, base: &str) -> bool {
    origin(url).eq_ignore_ascii_case(origin(base))
}

/// A URL without its query (which may hold signed tokens) for messages.
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find(|l| l.contains("rel=\"next\"")).and_then(|l| {
        let start = l.find('<')? + 1;
        let end = l.find('>')?;
        Some(l[start..end].to_string())
    })
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "https://r:5000/v2/a/blobs/uploads/";
        assert_eq!(resolve(base, "/v2/a/blobs/uploads/x?_state=1"), "https://r:5000/v2/a/blobs/uploads/x?_state=1");
        assert_eq!(resolve(base, "http://cdn/x"), "http://cdn/x");
        assert_eq!(resolve("https://r/v2/a/tags/list?n=1", "list?last=b"), "https://r/v2/a/tags/list?last=b");
        assert!(same_host("https://r:5000/x", "https://r:5000"));
        assert!(!same_host("https://cdn/x", "https://r:5000"));
        assert!(!same_host("http://r:5000/x", "https://r:5000"));
    }

    #[test]
    fn finds_the_next_page() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn sniffs_media_types() {
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#), MediaType::OciIndex);
        assert!(sniff_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#).as_str().contains("v1"));
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"config":{}}"#), MediaType::OciManifest);
    }

    #[test]
    fn encodes_scopes() {
        assert_eq!(encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
