//! Medians, ratios, targets, and the results as a table, JSON and `benches/RESULTS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::work::Unit;

/// What Strata must reach on a row, besides the rule every mount workload shares.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum Goal {
    /// At most this many times kernel overlayfs.
    Kernel(f64),
    /// At most this many seconds or bytes.
    Below(f64),
    /// Less than the named column.
    Faster(&'static str),
    /// No target of its own.
    None,
}

/// One measured row: samples per column.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Short key (`--only` matches on it).
    pub key: String,
    /// What was measured.
    pub label: String,
    /// Seconds or bytes (lower is better for both).
    #[serde(serialize_with = "unit_name")]
    pub unit: Unit,
    /// Strata's own target.
    pub goal: Goal,
    /// Columns in table order.
    pub cols: Vec<&'static str>,
    /// Samples per column, in the order taken.
    pub samples: BTreeMap<&'static str, Vec<f64>>,
}

fn unit_name<S: serde::Serializer>(u: &Unit, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match u {
        Unit::Seconds => "seconds",
        Unit::Bytes => "bytes",
    })
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

impl Row {
    /// The median of column `col`.
    pub fn median(&self, col: &str) -> Option<f64> {
        self.samples.get(col).and_then(|v| median(v))
    }

    /// Strata's median over `col`'s.
    pub fn ratio(&self, col: &str) -> Option<f64> {
        Some(self.median("strata")? / self.median(col)?)
    }

    /// Whether every target of the row is met, with the reasons it is not.
    pub fn verdict(&self) -> (bool, Vec<String>) {
        let mut missed = Vec::new();
        let strata = self.median("strata");
        match self.goal {
            Goal::Kernel(x) => {
                if let Some(r) = self.ratio("kernel").filter(|r| *r > x) {
                    missed.push(format!("{r:.2}× kernel > {x}×"));
                }
            }
            Goal::Below(x) => {
                if let Some(s) = strata.filter(|s| *s > x) {
                    missed.push(format!("{} > {}", fmt_value(self.unit, s), fmt_value(self.unit, x)));
                }
            }
            Goal::Faster(col) => {
                if let Some(r) = self.ratio(col).filter(|r| *r >= 1.0) {
                    missed.push(format!("{r:.2}× {col}"));
                }
            }
            Goal::None => {}
        }
        // Every timed workload: never slower than fuse-overlayfs; 2× faster where it is 2× the
        // kernel — compared with volatile Strata where there is one (fuse-overlayfs skips fsync).
        let peer = self.fo_peer();
        let fo_ratio = self.median(peer).zip(self.median("fuse-overlayfs")).map(|(s, f)| s / f);
        if let (Unit::Seconds, Some(fo), Some(r)) = (self.unit, self.median("fuse-overlayfs"), fo_ratio) {
            if r > 1.0 {
                missed.push(format!("{peer} {r:.2}× fuse-overlayfs > 1×"));
            } else if let Some(k) = self.median("kernel")
                && fo >= 2.0 * k
                && r > 0.5
            {
                missed.push(format!("{peer} {r:.2}× fuse-overlayfs > 0.5× (fuse-overlayfs is {:.1}× kernel)", fo / k));
            }
        }
        (missed.is_empty(), missed)
    }

    /// Strata on io_uring against the `/dev/fuse` transport and the kernel (issue 18): the
    /// metadata walks, small-file creation and `rm -rf` within 2× kernel overlayfs; no row more
    /// than 5% (this VM's noise) slower than `/dev/fuse`. `None` without a `strata-uring` column.
    pub fn uring_verdict(&self) -> Option<(bool, Vec<String>)> {
        let uring = self.median("strata-uring")?;
        let mut missed = Vec::new();
        let metadata = ["find-cold", "find-warm", "lslr-cold", "lslr-warm", "find-par4", "create", "untar", "rm"];
        if let Some(k) = self.median("kernel").filter(|_| metadata.contains(&self.key.as_str())) {
            let r = uring / k;
            if r > 2.0 {
                missed.push(format!("{r:.2}× kernel > 2×"));
            }
        }
        if let Some(r) = self.median("strata").map(|s| uring / s).filter(|r| self.unit == Unit::Seconds && *r > 1.05) {
            missed.push(format!("{r:.2}× /dev/fuse"));
        }
        Some((missed.is_empty(), missed))
    }

    /// The column held against fuse-overlayfs: volatile Strata where measured (the same work).
    fn fo_peer(&self) -> &'static str {
        if self.samples.contains_key("strata volatile") { "strata volatile" } else { "strata" }
    }

    /// The target in words.
    pub fn goal_words(&self) -> String {
        let own = match self.goal {
            Goal::Kernel(x) => format!("≤ {x}× kernel"),
            Goal::Below(x) => format!("≤ {}", fmt_value(self.unit, x)),
            Goal::Faster(c) => format!("< {c}"),
            Goal::None => String::new(),
        };
        if self.unit == Unit::Seconds && self.samples.contains_key("fuse-overlayfs") {
            let fo = if self.fo_peer() == "strata" { "≤ fuse-overlayfs" } else { "volatile ≤ fuse-overlayfs" };
            if own.is_empty() { fo.into() } else { format!("{own}, {fo}") }
        } else {
            own
        }
    }
}

/// A value for people: seconds as µs/ms/s, bytes as MiB.
pub fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => format!("{:.1} MiB", v / (1 << 20) as f64),
        Unit::Seconds if v < 1e-3 => format!("{:.1} µs", v * 1e6),
        Unit::Seconds if v < 1.0 => format!("{:.1} ms", v * 1e3),
        Unit::Seconds => format!("{v:.2} s"),
    }
}

/// The rows as a markdown table (also readable as plain text): one column per system, the
/// ratios Strata ÷ kernel and Strata ÷ the other tools, the target and whether it is met.
pub fn table(rows: &[Row]) -> String {
    let mut cols: Vec<&str> = Vec::new();
    for r in rows {
        for c in &r.cols {
            if !cols.contains(c) {
                cols.push(c);
            }
        }
    }
    let others: Vec<&str> = cols.iter().copied().filter(|c| !c.starts_with("strata") && *c != "plain").collect();
    let uring = cols.contains(&"strata-uring");
    let mut out = String::new();
    let _ = write!(out, "| workload |");
    for c in &cols {
        let _ = write!(out, " {c} |");
    }
    for c in &others {
        let _ = write!(out, " ÷ {c} |");
    }
    let _ = write!(out, " target | met |");
    if uring {
        let _ = write!(out, " io_uring ÷ kernel | io_uring ÷ /dev/fuse | io_uring met |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|{}", "---|".repeat(1 + cols.len() + others.len() + 2 + if uring { 3 } else { 0 }));
    for r in rows {
        let _ = write!(out, "| {} |", r.label);
        for c in &cols {
            let _ = write!(out, " {} |", r.median(c).map(|v| fmt_value(r.unit, v)).unwrap_or_default());
        }
        for c in &others {
            let cell = if r.cols.contains(c) { r.ratio(c).map(|x| format!("{x:.2}")) } else { None };
            let _ = write!(out, " {} |", cell.unwrap_or_default());
        }
        let (ok, missed) = r.verdict();
        let met = if r.median("strata").is_none() {
            "–".to_string()
        } else if ok {
            "yes".to_string()
        } else {
            format!("**no**: {}", missed.join("; "))
        };
        let _ = write!(out, " {} | {met} |", r.goal_words());
        if uring {
            let u = r.median("strata-uring");
            let ratio = |c: &str| u.zip(r.median(c)).map(|(u, c)| format!("{:.2}", u / c)).unwrap_or_default();
            let met = match r.uring_verdict() {
                None => String::new(),
                Some((true, _)) => "yes".into(),
                Some((false, missed)) => format!("**no**: {}", missed.join("; ")),
            };
            let _ = write!(out, " {} | {} | {met} |", ratio("kernel"), ratio("strata"));
        }
        let _ = writeln!(out);
    }
    out
}

/// Where the hand-written part of `benches/RESULTS.md` starts; a new run keeps it.
pub const NOTES_MARKER: &str = "<!-- notes: kept when the tables above are written again -->";

/// `benches/RESULTS.md`: the machine, the run, the tables and the targets missed.
pub fn markdown(
    machine: &BTreeMap<&'static str, String>,
    mode: &str,
    reps: usize,
    seconds: u64,
    rows: &[Row],
    tools: &[Row],
) -> String {
    let mut out = String::from("# Benchmark results\n\n");
    let _ = writeln!(
        out,
        "Made by `cargo bench --bench union{}` ({mode} run, {reps} repetitions per workload and system — at most 3 for memory, commit and unpack, 1 for the 1M-file walk — medians, {seconds} s).\n",
        if mode == "quick" { " -- --quick" } else { "" }
    );
    for (k, v) in machine {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\nRatios are Strata's cost ÷ the other's (below 1: Strata is faster).\n");
    out.push_str(&tables(rows, tools));
    out
}

/// The mount rows in one table, each tool row in a table of its own (their columns differ).
pub fn tables(rows: &[Row], tools: &[Row]) -> String {
    let mut parts = Vec::new();
    if !rows.is_empty() {
        parts.push(table(rows));
    }
    parts.extend(tools.iter().map(|r| table(std::slice::from_ref(r))));
    parts.join("\n")
}
