//! `ADD URL DEST`: a remote file fetched over HTTP(S) as docker's builder fetches it — never
//! unpacked, named by the last part of the URL's path, mode 0600 (unless `--chmod`), its mtime
//! from `Last-Modified` — into a directory of Strata's own that then serves as the step's
//! source. The step's cache key takes the content's sha256, so every build downloads it again
//! and a changed file misses the cache — unless `ADD --checksum=sha256:HEX` says what the
//! content must be: then the key takes that, a cached step downloads nothing, and a download
//! whose sha256 differs fails the step. On a terminal the download shows a live line.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::image::progress::Progress;
use crate::registry::tls::{self, TlsOptions};

/// Whether an ADD source is a URL.
pub fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// A file fetched.
pub struct Fetched {
    /// Where it is (`DIR/NAME`).
    pub path: PathBuf,
    /// Its name: the URL path's last part.
    pub name: String,
    /// `sha256:HEX` of its content.
    pub digest: String,
}

/// Checks an `ADD --checksum` value (`sha256:` and 64 hex digits, as BuildKit takes it).
pub fn parse_checksum(c: &str) -> Result<String, String> {
    match c.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", h.to_ascii_lowercase()))
        }
        _ => Err(format!("--checksum={c}: sha256:HEX (64 hex digits) expected")),
    }
}

/// Downloads `url` into `dir`, its content checked against `checksum` when one is given
/// (nothing is kept when it differs); an error is one line naming the URL.
pub fn fetch(url: &str, dir: &Path, checksum: Option<&str>, progress: Progress) -> Result<Fetched, String> {
    let f = download(url, dir, progress)?;
    match checksum {
        Some(want) if want != f.digest => {
            let _ = fs::remove_file(&f.path);
            Err(format!("{url}: content is {}, --checksum says {want}", f.digest))
        }
        _ => Ok(f),
    }
}

fn download(url: &str, dir: &Path, progress: Progress) -> Result<Fetched, String> {
    let bad = |why: &dyn std::fmt::Display| format!("{url}: {why}");
    let name = file_name(url)?;
    let host = url.split("://").nth(1).and_then(|r| r.split(['/', '?', '#']).next()).unwrap_or("");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls::config(&TlsOptions::default(), host).map_err(|e| bad(&e))?)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| bad(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(bad(&format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))).trim().into());
    }
    let mtime = resp.headers().get("last-modified").and_then(|v| v.to_str().ok()).and_then(http_date);
    let total = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let path = dir.join(&name);
    let mut file = fs::File::create(&path).map_err(|e| bad(&e))?;
    let line = progress.task(&name, total, "Downloading");
    let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                line.failed();
                return Err(bad(&e));
            }
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| bad(&e))?;
        line.inc(n as u64);
    }
    line.done("Download complete");
    file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| bad(&e))?;
    file.set_modified(mtime.unwrap_or_else(SystemTime::now)).map_err(|e| bad(&e))?;
    Ok(Fetched { path, name, digest: format!("sha256:{}", hex::encode(h.finalize())) })
}

/// The last part of the URL's path, if it names a file; else one line naming the URL.
pub fn file_name(url: &str) -> Result<String, String> {
    name_in(url).ok_or_else(|| format!("{url}: cannot determine a file name from the URL"))
}

fn name_in(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// An HTTP date in its one current form (RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(s: &str) -> Option<SystemTime> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = f.as_slice() else { return None };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else { return None };
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(file_name("http://h:1/a/b.tar.gz?x=1").as_deref(), Ok("b.tar.gz"));
        assert_eq!(name_in("https://h/"), None);
        assert_eq!(file_name("https://h"), Err("https://h: cannot determine a file name from the URL".into()));
        let t = http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        let hex = "ab".repeat(32);
        assert_eq!(parse_checksum(&format!("sha256:{}", hex.to_uppercase())), Ok(format!("sha256:{hex}")));
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("md5:{hex}")).is_err());
    }
}
