//! Real OCI distribution registries on loopback, for the registry tests: Debian's
//! `docker-registry` (distribution 2.8) serving a temp dir over plain HTTP or TLS (a CA made with
//! the `openssl` CLI), without auth, with htpasswd Basic auth, or with token auth (a token server
//! in this process, after docker's token spec: <https://distribution.github.io/distribution/spec/auth/token/>);
//! [`Throttle`], a TCP proxy that limits what reaches the client; and [`Liar`], a proxy that
//! answers some requests with a hostile reply.
//!
//! The registry logs one JSON line per event (`log.formatter: json`). A request ends with a line
//! whose `msg` is `response completed` (or `response completed with error`), carrying
//! `http.request.id`, `http.request.method`, `http.request.uri`, `http.response.status`,
//! `http.response.written` and, once authenticated, `auth.user.name`. Request headers such as
//! `Range` are not logged; at debug level the blob read shows its start offset instead
//! (`filesystem.Reader("…/data", OFFSET)`), and a ranged answer has status 206.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The commands the harness runs, with the Debian packages holding them.
const TOOLS: [(&str, &str); 3] =
    [("docker-registry", "docker-registry"), ("htpasswd", "apache2-utils"), ("openssl", "openssl")];

/// Service name the registry and the token server agree on (the tokens' `aud`).
pub const SERVICE: &str = "strata-test-registry";
/// Issuer of the tokens (their `iss`).
const ISSUER: &str = "strata-test-token-server";
/// How far distribution 2.8 stretches a token's `exp` and `nbf` for clock skew.
const LEEWAY_SECS: u64 = 60;

/// Whether the registry's tools (`docker-registry`, `htpasswd`, `openssl`) are installed. Off CI
/// the test is skipped (returns false); with `CI=true` a missing tool fails the test.
pub fn require_registry() -> bool {
    let missing: Vec<String> =
        TOOLS.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(c, p)| format!("{c} ({p})")).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(!super::store::in_ci(), "not installed: {}, and CI=true", missing.join(", "));
    eprintln!("skipped: not installed: {}", missing.join(", "));
    false
}

fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(cmd).is_file())
}

/// How a [`Registry`] is set up.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost` from a fresh CA.
    pub tls: bool,
    /// Who may do what.
    pub auth: Auth,
    /// Answer blob GETs with a redirect to this base URL plus the blob's storage path
    /// (distribution's `redirect` storage middleware, as registries behind a CDN do).
    pub redirect: Option<String>,
}

/// The registry's access control.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// HTTP Basic auth against an htpasswd file (bcrypt) of these (user, password) pairs; any
    /// authenticated user may pull and push anything.
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from a token server run by the harness.
    Token(TokenAuth),
}

impl RegistryOptions {
    /// Plain HTTP, no auth.
    pub fn new() -> RegistryOptions {
        RegistryOptions::default()
    }

    /// Serve HTTPS instead of HTTP.
    pub fn tls(mut self) -> RegistryOptions {
        self.tls = true;
        self
    }

    /// Basic auth for these (user, password) pairs.
    pub fn htpasswd(mut self, users: &[(&str, &str)]) -> RegistryOptions {
        self.auth = Auth::Htpasswd(users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect());
        self
    }

    /// Blob GETs redirected to `base_url` + the blob's path in the storage dir.
    pub fn redirect_blobs_to(mut self, base_url: &str) -> RegistryOptions {
        self.redirect = Some(base_url.to_string());
        self
    }

    /// Token auth.
    pub fn token(mut self, auth: TokenAuth) -> RegistryOptions {
        self.auth = Auth::Token(auth);
        self
    }
}

/// What the token server grants. A user with the right password may pull every repository and
/// push (and delete) in repositories whose name starts with one of their prefixes (by default
/// `USER/`); anonymous requests may pull (unless turned off); a wrong password gets 401.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// The users.
    pub users: Vec<TokenUser>,
    /// Whether requests without credentials get pull tokens (else 401).
    pub anonymous_pull: bool,
    /// Lifetime of a token in seconds: the answer's `expires_in`, and when the registry starts
    /// refusing it.
    pub expires_in: u64,
}

/// One user of the token server.
#[derive(Clone, Debug)]
pub struct TokenUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Repository name prefixes this user may push to.
    pub push: Vec<String>,
}

impl TokenAuth {
    /// These (user, password) pairs, each pushing to `USER/…`; anonymous pulls allowed; tokens
    /// live 300 s.
    pub fn new(users: &[(&str, &str)]) -> TokenAuth {
        let users = users
            .iter()
            .map(|(u, p)| TokenUser { name: u.to_string(), password: p.to_string(), push: vec![format!("{u}/")] })
            .collect();
        TokenAuth { users, anonymous_pull: true, expires_in: 300 }
    }

    /// Replaces the prefixes `user` may push to.
    pub fn push_prefixes(mut self, user: &str, prefixes: &[&str]) -> TokenAuth {
        let u = self.users.iter_mut().find(|u| u.name == user).expect("no such token user");
        u.push = prefixes.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Tokens live `secs` seconds (the registry refuses them afterwards).
    pub fn expires_in(mut self, secs: u64) -> TokenAuth {
        self.expires_in = secs;
        self
    }

    /// Whether anonymous requests get pull tokens.
    pub fn anonymous_pull(mut self, allow: bool) -> TokenAuth {
        self.anonymous_pull = allow;
        self
    }
}

/// A `docker-registry` process serving a temp dir on `127.0.0.1`; killed on drop.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    /// The `http.tls` and `auth` sections of the config.
    config_tail: String,
    child: Option<Child>,
    tokens: Option<TokenServer>,
}

/// How one launch of the process went.
enum Launch {
    Ready,
    PortTaken,
}

impl Registry {
    /// Starts a registry (on a free port) and waits until `/v2/` answers.
    pub fn start(opts: RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("openssl.cnf"), OPENSSL_CNF).unwrap();
        let mut config_tail = String::new();
        if opts.tls {
            let (cert, key) = make_tls(dir.path());
            config_tail += &format!("  tls:\n    certificate: {}\n    key: {}\n", yaml_path(&cert), yaml_path(&key));
        }
        let mut tokens = None;
        match &opts.auth {
            Auth::None => {}
            Auth::Htpasswd(users) => {
                let file = write_htpasswd(dir.path(), users);
                config_tail += &format!("auth:\n  htpasswd:\n    realm: {SERVICE}\n    path: {}\n", yaml_path(&file));
            }
            Auth::Token(auth) => {
                let server = TokenServer::start(dir.path(), auth.clone());
                config_tail += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.realm(),
                    yaml_path(&server.state.cert)
                );
                tokens = Some(server);
            }
        }
        if let Some(base) = &opts.redirect {
            config_tail += &format!(
                "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {}\n",
                serde_json::to_string(base).unwrap()
            );
        }
        let mut reg = Registry { dir, port: 0, tls: opts.tls, config_tail, child: None, tokens };
        for _ in 0..10 {
            reg.port = free_port();
            reg.write_config();
            if let Launch::Ready = reg.launch() {
                return reg;
            }
        }
        panic!("docker-registry found no free port:\n{}", reg.log());
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://HOST` or `https://HOST`, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.host())
    }

    /// A directory holding only `ca.crt`, as docker's `certs.d/HOST/` and skopeo's or podman's
    /// `--cert-dir` expect. Panics on a plain HTTP registry.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(self.tls, "this registry serves plain HTTP");
        self.dir.path().join("certs")
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.cert_dir().join("ca.crt")
    }

    /// An HTTP client that trusts the registry's CA, uses no proxy and returns error statuses as
    /// responses.
    pub fn agent(&self) -> ureq::Agent {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if self.tls {
            let ca = Certificate::from_pem(&fs::read(self.ca()).unwrap()).unwrap();
            tls = tls.root_certs(RootCerts::Specific(Arc::new(vec![ca])));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls.build())
            .build();
        ureq::Agent::new_with_config(config)
    }

    /// The storage root (`rootdirectory` of the filesystem driver).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the blob `digest` (`sha256:HEX`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// Kills the process (SIGKILL) and reaps it. Requests in flight are not logged, but what the
    /// process had written to its sockets still reaches the clients (see [`Throttle`]).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs and starts it again: same port, storage and config.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if let Launch::Ready = self.launch() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry could not get port {} back:\n{}", self.port, self.log());
    }

    /// Everything the process wrote (over all its runs).
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The completed requests, in the order the log has them.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        parse_log(&self.log())
    }

    /// The completed GETs of blob `digest`, in order.
    pub fn blob_gets(&self, digest: &str) -> Vec<LoggedRequest> {
        let tail = format!("/blobs/{digest}");
        self.requests().into_iter().filter(|r| r.method == "GET" && r.uri.ends_with(&tail)).collect()
    }

    /// The bytes each completed GET of blob `digest` sent (`http.response.written`).
    pub fn blob_written(&self, digest: &str) -> Vec<u64> {
        self.blob_gets(digest).iter().map(|r| r.written).collect()
    }

    /// The token server's URL (`http://127.0.0.1:PORT/token`). Panics unless the registry uses
    /// token auth.
    pub fn token_realm(&self) -> String {
        self.tokens.as_ref().expect("this registry does not use token auth").realm()
    }

    /// What the token server was asked, in order. Panics unless the registry uses token auth.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        let server = self.tokens.as_ref().expect("this registry does not use token auth");
        server.state.requests.lock().unwrap().clone()
    }

    /// The log from byte `from` on.
    fn log_since(&self, from: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default()).into_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    fn write_config(&self) {
        let config = format!(
            "version: 0.1\n\
             log:\n  level: debug\n  formatter: json\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {}\n  secret: strata-test-secret\n{}",
            yaml_path(&self.storage()),
            self.host(),
            self.config_tail
        );
        fs::write(self.config_path(), config).unwrap();
    }

    /// Runs the process and waits until it serves `/v2/`, or failed to bind its port.
    fn launch(&mut self) -> Launch {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let from = log.metadata().unwrap().len();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.config_path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("running docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run = self.log_since(from);
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                if run.contains("address already in use") {
                    return Launch::PortTaken;
                }
                panic!("docker-registry exited ({status}):\n{run}");
            }
            if run.contains("\"listening on ") && self.answers() {
                return Launch::Ready;
            }
            assert!(Instant::now() < deadline, "docker-registry did not come up:\n{run}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `/v2/` answers 200 or 401.
    fn answers(&self) -> bool {
        let status = self.agent().get(self.url("/v2/")).call().map(|r| r.status().as_u16());
        matches!(status, Ok(200 | 401))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free right now on 127.0.0.1 (someone may take it before it is used).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A path as a YAML scalar (JSON strings are YAML).
fn yaml_path(p: &Path) -> String {
    serde_json::to_string(p.to_str().unwrap()).unwrap()
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn run(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `openssl ARGS` in `dir`, which must succeed; returns its stdout. ARGS are split at spaces:
/// paths in them are relative to `dir`.
fn openssl(dir: &Path, args: &str) -> Vec<u8> {
    run(Command::new("openssl").current_dir(dir).args(args.split(' ')), b"")
}

/// `openssl.cnf`: extensions of the certificates [`make_tls`] and the token server make.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[signer]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
";

/// Makes `certs/ca.crt` (a P-256 CA) and a server certificate for `127.0.0.1` and `localhost`
/// in `dir/tls/`; returns (certificate, key).
fn make_tls(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir.join("certs")).unwrap();
    fs::create_dir_all(dir.join("tls")).unwrap();
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -config openssl.cnf";
    let ca = "req -x509 -extensions ca -subj /CN=strata-test-CA -days 2 -keyout tls/ca.key -out certs/ca.crt";
    openssl(dir, &format!("{ca} {key}"));
    let csr = "req -new -subj /CN=127.0.0.1 -keyout tls/server.key -out tls/server.csr";
    openssl(dir, &format!("{csr} {key}"));
    let sign = "x509 -req -in tls/server.csr -CA certs/ca.crt -CAkey tls/ca.key -days 2 -extfile openssl.cnf";
    let serial = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    openssl(dir, &format!("{sign} -extensions server -set_serial {serial} -out tls/server.crt"));
    (dir.join("tls/server.crt"), dir.join("tls/server.key"))
}

/// Writes `dir/htpasswd` with bcrypt hashes of these (user, password) pairs.
fn write_htpasswd(dir: &Path, users: &[(String, String)]) -> PathBuf {
    let mut file = Vec::new();
    for (user, password) in users {
        let line = run(Command::new("htpasswd").args(["-niB", user]), password.as_bytes());
        file.extend_from_slice(String::from_utf8(line).unwrap().trim().as_bytes());
        file.push(b'\n');
    }
    let path = dir.join("htpasswd");
    fs::write(&path, file).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// The log

/// One completed request, from the registry's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `http.request.method`.
    pub method: String,
    /// `http.request.uri` (path and query).
    pub uri: String,
    /// `http.response.status`.
    pub status: u16,
    /// `http.response.written`: bytes of body sent.
    pub written: u64,
    /// For a blob read, the offset it started at (0 unless a `Range` asked for more).
    pub offset: Option<u64>,
    /// `auth.user.name`: who the registry authenticated.
    pub user: Option<String>,
}

/// The completed requests of a JSON log. The line saying `response completed` has neither the
/// user nor the offset: those come from the request's other lines (same `http.request.id`),
/// the user from `auth.user.name`, the offset from the debug line `filesystem.Reader("…", OFFSET)`.
fn parse_log(log: &str) -> Vec<LoggedRequest> {
    let mut offsets: HashMap<String, u64> = HashMap::new();
    let mut users: HashMap<String, String> = HashMap::new();
    let mut done = Vec::new();
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(id), Some(msg)) = (field("http.request.id"), field("msg")) else { continue };
        if let Some(user) = field("auth.user.name") {
            users.entry(id.clone()).or_insert(user);
        }
        if let Some(args) = msg.strip_prefix("filesystem.Reader(") {
            let offset = args.trim_end_matches(')').rsplit(", ").next().and_then(|n| n.parse().ok());
            if let Some(offset) = offset {
                offsets.entry(id).or_insert(offset);
            }
        } else if msg.starts_with("response completed") {
            let number = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            let request = LoggedRequest {
                method: field("http.request.method").unwrap_or_default(),
                uri: field("http.request.uri").unwrap_or_default(),
                status: number("http.response.status") as u16,
                written: number("http.response.written"),
                offset: None,
                user: None,
            };
            done.push((id, request));
        }
    }
    let complete = |(id, r): (String, LoggedRequest)| LoggedRequest {
        offset: offsets.get(&id).copied(),
        user: users.get(&id).cloned(),
        ..r
    };
    done.into_iter().map(complete).collect()
}

// ---------------------------------------------------------------------------------------------
// The token server

/// One request the token server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// Path and query, as sent (`/token?service=…&scope=…`).
    pub path: String,
    /// Whether it carried an `Authorization` header.
    pub authorization: bool,
    /// The user whose credentials were right.
    pub user: Option<String>,
    /// The status answered (200, 401 or 404).
    pub status: u16,
    /// What the token grants, as scopes (`repository:NAME:pull,push`).
    pub granted: Vec<String>,
}

/// A token server on `127.0.0.1`, answering `GET /token` (one thread per connection, one
/// request per connection); stopped on drop.
struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the token server's threads share.
struct TokenState {
    auth: TokenAuth,
    /// The signing key (RSA, PEM) and its self-signed certificate (the registry's
    /// `rootcertbundle`).
    key: PathBuf,
    cert: PathBuf,
    /// The certificate, DER in base64: the tokens' `x5c` header.
    x5c: String,
    requests: Mutex<Vec<TokenRequest>>,
    serial: AtomicU64,
}

impl TokenServer {
    /// Makes a signing key and certificate in `dir/token/` (with `dir/openssl.cnf`) and starts
    /// serving.
    fn start(dir: &Path, auth: TokenAuth) -> TokenServer {
        fs::create_dir_all(dir.join("token")).unwrap();
        let cert = "req -x509 -subj /CN=strata-test-token -days 2 -keyout token/key.pem -out token/cert.pem";
        openssl(dir, &format!("{cert} -newkey rsa:2048 -nodes -config openssl.cnf -extensions signer"));
        let der = openssl(dir, "x509 -in token/cert.pem -outform DER");
        let state = Arc::new(TokenState {
            auth,
            key: dir.join("token/key.pem"),
            cert: dir.join("token/cert.pem"),
            x5c: STANDARD.encode(der),
            requests: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            accept_loop(&listener, &sp, |conn| {
                let st = st.clone();
                std::thread::spawn(move || st.serve(conn));
            })
        });
        TokenServer { addr, state, stop, thread: Some(thread) }
    }

    /// The URL the registry sends clients to.
    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hands each connection of a non-blocking `listener` to `handle` (as a blocking stream) until
/// `stop` is set.
fn accept_loop(listener: &TcpListener, stop: &AtomicBool, mut handle: impl FnMut(TcpStream)) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                handle(conn);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A request's head, read up to the blank line (at most 64 KiB).
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 65536 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

impl TokenState {
    /// Answers one request on `conn`, then closes it.
    fn serve(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let Some(head) = read_head(&mut conn) else { return };
        let mut lines = head.lines();
        let mut words = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
        let authorization = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.trim().to_string());
        let (status, body, record) = self.answer(method, target, authorization.as_deref());
        self.requests.lock().unwrap().push(TokenRequest {
            path: target.to_string(),
            authorization: authorization.is_some(),
            status,
            ..record
        });
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let challenge = if status == 401 { "WWW-Authenticate: Basic realm=\"strata-test\"\r\n" } else { "" };
        let _ = write!(
            conn,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n{challenge}\r\n{body}",
            body.len()
        );
        let _ = conn.shutdown(Shutdown::Both);
    }

    /// (status, body, what to record) for one request.
    fn answer(&self, method: &str, target: &str, authorization: Option<&str>) -> (u16, String, TokenRequest) {
        let mut record =
            TokenRequest { path: String::new(), authorization: false, user: None, status: 0, granted: Vec::new() };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if method != "GET" || path != "/token" {
            return (404, "{}".into(), record);
        }
        let user = match authorization {
            None if self.auth.anonymous_pull => None,
            None => return (401, r#"{"details":"credentials required"}"#.into(), record),
            Some(value) => match self.user(value) {
                Some(user) => Some(user),
                None => return (401, r#"{"details":"wrong user name or password"}"#.into(), record),
            },
        };
        record.user = user.map(|u| u.name.clone());
        let scopes = query_values(query, "scope");
        let access: Vec<Access> = scopes.iter().flat_map(|s| s.split(' ')).filter_map(|s| grant(user, s)).collect();
        record.granted = access.iter().map(Access::scope).collect();
        let token = self.sign(record.user.as_deref().unwrap_or(""), access.iter().map(Access::claim).collect());
        let body = json!({"token": token, "access_token": token, "expires_in": self.auth.expires_in});
        (200, body.to_string(), record)
    }

    /// The user whose `Basic` credentials these are, if the password is right.
    fn user(&self, authorization: &str) -> Option<&TokenUser> {
        let (scheme, encoded) = authorization.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (name, password) = decoded.split_once(':')?;
        self.auth.users.iter().find(|u| u.name == name && u.password == password)
    }

    /// A JWT for `sub` granting `access`, RS256-signed by `openssl dgst`, its certificate in
    /// `x5c`. Its `exp` is set [`LEEWAY_SECS`] early, so that the registry (which allows that
    /// much clock skew) refuses it `expires_in` seconds after issue.
    fn sign(&self, sub: &str, access: Vec<Value>) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER,
            "sub": sub,
            "aud": SERVICE,
            "iat": now,
            "nbf": now,
            "exp": (now + self.auth.expires_in).saturating_sub(LEEWAY_SECS),
            "jti": format!("{}-{}", std::process::id(), self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let key = self.key.to_str().unwrap();
        let signature =
            run(Command::new("openssl").args(["dgst", "-sha256", "-binary", "-sign", key]), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// What a token grants on one repository.
struct Access {
    name: String,
    actions: Vec<String>,
}

impl Access {
    /// As an entry of the `access` claim.
    fn claim(&self) -> Value {
        json!({"type": "repository", "name": self.name, "actions": self.actions})
    }

    /// As a scope: `repository:NAME:ACTION,…`.
    fn scope(&self) -> String {
        format!("repository:{}:{}", self.name, self.actions.join(","))
    }
}

/// What is granted for one requested scope (`repository:NAME:ACTIONS`), if anything: `pull` to
/// anyone, `push` and `delete` to a user owning a prefix of NAME.
fn grant(user: Option<&TokenUser>, scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, asked) = rest.rsplit_once(':')?;
    let owner = user.is_some_and(|u| u.push.iter().any(|p| name.starts_with(p.as_str())));
    let allowed: &[&str] = if owner { &["pull", "push", "delete"] } else { &["pull"] };
    let actions: Vec<String> = asked.split(',').filter(|a| allowed.contains(a)).map(str::to_string).collect();
    (kind == "repository" && !actions.is_empty()).then(|| Access { name: name.to_string(), actions })
}

/// The decoded values of `key` in a query string.
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in a query).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(h)) => {
                out.push(u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap());
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The throttling proxy

/// A TCP proxy on `127.0.0.1` in front of `upstream`, limiting the bytes sent to clients (all
/// connections together) to a rate that can change while it runs. Both sides of a connection
/// close when either end closes. Stops, closing every connection, on drop.
///
/// A killed registry's kernel still sends what the process had written to its sockets (several
/// MiB: the send buffer grows to `net.ipv4.tcp_wmem`'s maximum), so a throttled download goes on
/// after [`Registry::kill`]; [`Throttle::cut`] ends it at once.
pub struct Throttle {
    addr: SocketAddr,
    shared: Arc<ThrottleShared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
struct ThrottleShared {
    upstream: String,
    /// Bytes per second forwarded, both ways together; 0 is unlimited.
    rate: AtomicU64,
    /// When the bytes already allowed through will have been sent at `rate`.
    next_free: Mutex<Instant>,
    to_client: AtomicU64,
    to_upstream: AtomicU64,
    connections: AtomicU64,
    /// The open connections (client, upstream), by number.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl Throttle {
    /// Starts forwarding to `upstream` (`HOST:PORT`), unlimited.
    pub fn start(upstream: &str) -> Throttle {
        let shared = Arc::new(ThrottleShared {
            upstream: upstream.to_string(),
            rate: AtomicU64::new(0),
            next_free: Mutex::new(Instant::now()),
            to_client: AtomicU64::new(0),
            to_upstream: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, sp) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || accept_loop(&listener, &sp, |client| sh.clone().forward(client)));
        Throttle { addr, shared, stop, thread: Some(thread) }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Limits the bytes forwarded (both ways together) to `bytes_per_sec` (0: unlimited), from
    /// now on.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.shared.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Bytes sent to clients so far.
    pub fn to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// Bytes sent upstream so far.
    pub fn to_upstream(&self) -> u64 {
        self.shared.to_upstream.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Closes every open connection (both sides), as a network failure would.
    pub fn cut(&self) {
        for (client, upstream) in self.shared.open.lock().unwrap().values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.cut();
    }
}

impl ThrottleShared {
    /// Connects `client` to upstream and starts one thread per direction; a client whose
    /// upstream cannot be reached is closed.
    fn forward(self: Arc<Self>, client: TcpStream) {
        let id = self.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(upstream) = TcpStream::connect(&self.upstream) else { return };
        let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
        let clones = (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone());
        let (Ok(c1), Ok(u1), Ok(c2), Ok(u2)) = clones else { return };
        self.open.lock().unwrap().insert(id, (c1, u1));
        let up = self.clone();
        std::thread::spawn(move || up.pump_up(c2, u2));
        std::thread::spawn(move || {
            self.pump_down(upstream, client);
            self.open.lock().unwrap().remove(&id);
        });
    }

    /// Client to upstream, at the same rate (an upload is held as a download is). The client's
    /// end of input is passed on; an error closes both sides.
    fn pump_up(&self, mut client: TcpStream, mut upstream: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let rate = self.rate.load(Ordering::SeqCst) as usize;
            let chunk = if rate == 0 { buf.len() } else { (rate / 50).clamp(1, buf.len()) };
            match client.read(&mut buf[..chunk]) {
                Ok(0) => {
                    let _ = upstream.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    self.pace(n);
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    self.to_upstream.fetch_add(n as u64, Ordering::SeqCst);
                }
                _ => break,
            }
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }

    /// Upstream to client at the current rate, in chunks of 1/50 s; when either side ends,
    /// both are closed.
    fn pump_down(&self, mut upstream: TcpStream, mut client: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let rate = self.rate.load(Ordering::SeqCst) as usize;
            let chunk = if rate == 0 { buf.len() } else { (rate / 50).clamp(1, buf.len()) };
            let n = match upstream.read(&mut buf[..chunk]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.pace(n);
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            self.to_client.fetch_add(n as u64, Ordering::SeqCst);
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }

    /// Waits until `n` more bytes may go out without exceeding the rate.
    fn pace(&self, n: usize) {
        let rate = self.rate.load(Ordering::SeqCst);
        if rate == 0 {
            return;
        }
        let until = {
            let mut next_free = self.next_free.lock().unwrap();
            let start = (*next_free).max(Instant::now());
            *next_free = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *next_free
        };
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
}

// ---------------------------------------------------------------------------------------------
// A file server (the "CDN" blobs are redirected to)

/// One request a [`FileServer`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRequest {
    /// The path asked for.
    pub path: String,
    /// Whether it carried an `Authorization` header.
    pub authorization: bool,
    /// The status answered.
    pub status: u16,
}

/// Serves the files under a directory over plain HTTP/1.1 (GET only, one request per
/// connection), recording each request; stops on drop.
pub struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<FileRequest>>>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    /// Serves `root` on a free port of 127.0.0.1.
    pub fn start(root: PathBuf) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve_file(conn, &root, &log),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer { port, requests, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<FileRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_file(mut conn: TcpStream, root: &Path, log: &Mutex<Vec<FileRequest>>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
    let authorization = head.lines().any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    let file = root.join(path.trim_start_matches('/'));
    let (status, body) = match fs::read(&file) {
        Ok(b) if !path.contains("..") => (200, b),
        _ => (404, Vec::new()),
    };
    log.lock().unwrap().push(FileRequest { path, authorization, status });
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let _ = write!(conn, "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = conn.write_all(&body);
}

// ---------------------------------------------------------------------------------------------
// A lying registry: a real one behind a proxy that answers some paths with a hostile reply

/// What a [`Liar`] answers instead of the registry, for requests whose path contains its
/// pattern.
#[derive(Clone, Debug)]
pub enum Lie {
    /// A `200` manifest of this many bytes (a valid JSON head, then spaces).
    HugeManifest(usize),
    /// A `200` answer (chunked) that never ends.
    Endless,
    /// A `200` answer announcing the blob's length, then sending more than that, forever.
    LongerThanSaid(u64),
}

/// A proxy in front of a real registry (`GET` and `HEAD`, one request per connection) that
/// answers paths containing a pattern with a [`Lie`]. Counts the lies told.
pub struct Liar {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    told: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Liar {
    /// Starts in front of `upstream` (`HOST:PORT`, plain HTTP), lying `lie` for paths
    /// containing `pattern`.
    pub fn start(upstream: &str, pattern: &str, lie: Lie) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, told) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (sp, t) = (stop.clone(), told.clone());
        let (upstream, pattern) = (upstream.to_string(), pattern.to_string());
        let thread = std::thread::spawn(move || {
            accept_loop(&listener, &sp, |conn| {
                let (upstream, pattern, lie, t, sp) =
                    (upstream.clone(), pattern.clone(), lie.clone(), t.clone(), sp.clone());
                std::thread::spawn(move || liar_serve(conn, &upstream, &pattern, &lie, &t, &sp));
            })
        });
        Liar { addr, stop, told, thread: Some(thread) }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Lies told so far.
    pub fn told(&self) -> u64 {
        self.told.load(Ordering::SeqCst)
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request: a lie, or the registry's own answer.
fn liar_serve(mut conn: TcpStream, upstream: &str, pattern: &str, lie: &Lie, told: &AtomicU64, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    // A TLS hello (a client trying HTTPS first) gets what distribution's plain HTTP server says.
    let mut first = [0u8; 1];
    if conn.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
        let _ = conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
        return;
    }
    let Some(head) = read_head(&mut conn) else { return };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("/").to_string());
    if method == "GET" && path.contains(pattern) {
        told.fetch_add(1, Ordering::SeqCst);
        let endless = |conn: &mut TcpStream, chunked: bool| {
            let chunk = vec![b'x'; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                let ok = if chunked {
                    write!(conn, "{:x}\r\n", chunk.len())
                        .and_then(|_| conn.write_all(&chunk))
                        .and_then(|_| conn.write_all(b"\r\n"))
                } else {
                    conn.write_all(&chunk)
                };
                if ok.is_err() {
                    return;
                }
            }
        };
        let _ = match lie {
            Lie::HugeManifest(n) => {
                let mut body =
                    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]"#
                        .to_vec();
                body.resize(*n - 1, b' ');
                body.push(b'}');
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|_| conn.write_all(&body))
            }
            Lie::Endless => {
                let ct = if path.contains("/manifests/") {
                    "application/vnd.oci.image.manifest.v1+json"
                } else {
                    "application/octet-stream"
                };
                let r = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                );
                endless(&mut conn, true);
                r
            }
            Lie::LongerThanSaid(len) => {
                let r = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                endless(&mut conn, false);
                r
            }
        };
        return;
    }
    // Pass the request on (its Accept and Authorization), the registry's answer back whole,
    // closing the connection after it (one request per connection, said to the client too).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("http://{upstream}{path}");
    let mut req = match method.as_str() {
        "HEAD" => agent.head(&url),
        _ => agent.get(&url),
    };
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':')
            && ["accept", "authorization", "range"].contains(&k.trim().to_ascii_lowercase().as_str())
        {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(mut resp) = req.call() else { return };
    let body = if method == "HEAD" { Vec::new() } else { resp.body_mut().read_to_vec().unwrap_or_default() };
    let mut out = format!("HTTP/1.1 {}\r\n", resp.status());
    for (k, v) in resp.headers() {
        if !["connection", "transfer-encoding", "content-length"].contains(&k.as_str()) {
            out += &format!("{k}: {}\r\n", v.to_str().unwrap_or(""));
        }
    }
    let len = if method == "HEAD" {
        resp.headers().get("content-length").and_then(|v| v.to_str().ok()).unwrap_or("0").to_string()
    } else {
        body.len().to_string()
    };
    out += &format!("Content-Length: {len}\r\nConnection: close\r\n\r\n");
    let _ = conn.write_all(out.as_bytes()).and_then(|_| conn.write_all(&body));
}
