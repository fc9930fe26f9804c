//! How a registry wants to be authenticated (distribution's token-auth spec and RFC 7235):
//! the `WWW-Authenticate` challenge of a 401, and the Bearer tokens fetched for it, cached per
//! scope until they expire.
//!
//! - `Basic realm="…"`: the user name and password go with every request.
//! - `Bearer realm="URL",service="S",scope="repository:NAME:pull"`: a token is fetched from the
//!   realm (`GET URL?service=S&scope=…`, with the credentials as Basic auth when there are any,
//!   anonymously otherwise) and sent as `Authorization: Bearer TOKEN`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;

use super::credentials::Auth;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Challenge {
    /// No authentication asked for (yet).
    #[default]
    None,
    /// HTTP Basic.
    Basic,
    /// Token auth.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
        /// `error="insufficient_scope"` and the like.
        error: Option<String>,
    },
}

impl Challenge {
    /// Parses a header value; `None` for schemes this client does not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        })
    }
}

/// `k="v", k2=v2` pairs; quoted values may hold commas and `\"`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        out.push((key.trim().to_string(), value));
    }
    out
}

/// The `Authorization` value for Basic auth.
pub fn basic(auth: &Auth) -> String {
    let raw = format!("{}:{}", auth.username, auth.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// A token and when it stops being good.
#[derive(Clone)]
struct Token {
    value: String,
    until: Instant,
}

/// Tokens by scope (the scopes of a request, joined by spaces).
#[derive(Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, Token>>,
}

/// What a token endpoint answers (`token`, or OAuth2's `access_token`).
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, if the answer holds one.
    pub fn value(&self) -> Option<&str> {
        self.token.as_deref().or(self.access_token.as_deref()).filter(|t| !t.is_empty())
    }
}

impl Tokens {
    /// A cached token for `scopes` that is still good.
    pub fn get(&self, scopes: &str) -> Option<String> {
        let map = self.map.lock();
        map.get(scopes).filter(|t| t.until > Instant::now()).map(|t| t.value.clone())
    }

    /// Remembers a token (good for its `expires_in`, 60 s by default, less a margin).
    pub fn put(&self, scopes: &str, answer: &TokenResponse) -> Option<String> {
        let value = answer.value()?.to_string();
        let life = Duration::from_secs(answer.expires_in.unwrap_or(60).max(1));
        let until = Instant::now() + life.saturating_sub(Duration::from_secs(5)).max(life / 2);
        self.map.lock().insert(scopes.to_string(), Token { value: value.clone(), until });
        Some(value)
    }

    /// Forgets the token of `scopes` (the registry refused it).
    pub fn forget(&self, scopes: &str) {
        self.map.lock().remove(scopes);
    }
}

/// The scope of pulling from `repository`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope of pushing to `repository`.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: None,
            }
        );
        let c = Challenge::parse(r#"bearer realm=http://h/t, error="insufficient_scope""#).unwrap();
        assert!(matches!(c, Challenge::Bearer { ref realm, ref error, .. }
            if realm == "http://h/t" && error.as_deref() == Some("insufficient_scope")));
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn caches_tokens_per_scope_until_they_expire() {
        let t = Tokens::default();
        let answer: TokenResponse = serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.put("repository:a:pull", &answer).as_deref(), Some("abc"));
        assert_eq!(t.get("repository:a:pull").as_deref(), Some("abc"));
        assert_eq!(t.get("repository:a:pull,push"), None);
        t.forget("repository:a:pull");
        assert_eq!(t.get("repository:a:pull"), None);
        let empty: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.put("s", &empty), None);
    }

    #[test]
    fn basic_auth_header() {
        let a = Auth { username: "u".into(), password: "p:w".into() };
        assert_eq!(basic(&a), "Basic dTpwOnc=");
    }
}
