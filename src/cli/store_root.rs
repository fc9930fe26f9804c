//! Where the image store is (`--root`, `STRATA_ROOT`, or the default for the user), and the
//! table and age formats the image verbs print in (docker's).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

pub use crate::image::progress::human_size;
use crate::image::store::Store;

/// `/var/lib/strata` as root; `$XDG_DATA_HOME/strata` or `~/.local/share/strata` otherwise.
pub fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("strata");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/strata")
}

/// Opens (creating if needed) the store at `root`.
pub fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("image store {}", root.display()))
}

/// Prints rows under headers, columns padded to their widest cell and three spaces apart.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print_table_min(headers, rows, 0);
}

/// [`print_table`] with columns at least `min` characters wide, spaces included (docker's
/// `volume ls` columns are 10).
pub fn print_table_min(headers: &[&str], rows: &[Vec<String>], min: usize) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count().max(min.saturating_sub(3))).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints text to standard output; a reader that went away (`| head`) ends the output quietly.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to standard output"),
        _ => Ok(()),
    }
}

/// How long ago an RFC 3339 time was, as docker says it (`3 days ago`); `N/A` if unknown.
pub fn human_age(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|s| humantime::parse_rfc3339_weak(s).ok()) else {
        return "N/A".into();
    };
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", human_duration(d.as_secs())),
        Err(e) => format!("{} from now", human_duration(e.duration().as_secs())),
    }
}

pub(crate) fn human_duration(secs: u64) -> String {
    let (mins, hours) = (secs / 60, (secs as f64 / 3600.0).round() as u64);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_system_store() {
        if rustix::process::geteuid().is_root() {
            assert_eq!(default_root(), Path::new("/var/lib/strata"));
        } else {
            assert!(default_root().ends_with("strata"));
        }
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(3 * 365 * 86_400), "3 years");
        assert_eq!(human_age(None), "N/A");
    }
}
