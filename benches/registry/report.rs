//! Medians, ratios, targets, and the section of `benches/RESULTS.md` this bench owns (between
//! its own markers, below the union bench's notes marker, so neither bench rewrites the other's
//! tables).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::median;

/// Seconds or bytes; lower is better for both.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Seconds,
    Bytes,
}

/// One of Strata's targets on a row.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum Target {
    /// Strata's median at most `x` times the column's (`strict`: less than).
    Times { col: &'static str, x: f64, strict: bool },
    /// Strata's median at most this many seconds or bytes.
    Below(f64),
}

/// One measured row: samples per column.
#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub unit: Unit,
    pub cols: Vec<&'static str>,
    pub targets: Vec<Target>,
    /// Samples per column, in the order taken.
    pub samples: BTreeMap<&'static str, Vec<f64>>,
}

/// A value for people: seconds as ms/s, bytes as MiB.
pub fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => format!("{:.1} MiB", v / (1 << 20) as f64),
        Unit::Seconds if v < 1.0 => format!("{:.0} ms", v * 1e3),
        Unit::Seconds => format!("{v:.2} s"),
    }
}

impl Row {
    pub fn median(&self, col: &str) -> Option<f64> {
        self.samples.get(col).and_then(|v| median(v))
    }

    /// Strata's median over `col`'s.
    pub fn ratio(&self, col: &str) -> Option<f64> {
        Some(self.median("strata")? / self.median(col)?)
    }

    /// The targets in words.
    fn target_words(&self) -> String {
        let words: Vec<String> = self
            .targets
            .iter()
            .map(|t| match *t {
                Target::Times { col, x: 1.0, strict } => format!("{} {col}", if strict { "<" } else { "≤" }),
                Target::Times { col, x, .. } => format!("≤ {x}× {col}"),
                Target::Below(x) => format!("≤ {}", fmt_value(self.unit, x)),
            })
            .collect();
        words.join(", ")
    }

    /// `yes`, or `**no**:` and the targets missed; `–` without a Strata sample.
    fn verdict(&self) -> String {
        let Some(strata) = self.median("strata") else { return "–".into() };
        let mut missed = Vec::new();
        for t in &self.targets {
            match *t {
                Target::Times { col, x, strict } => match self.ratio(col) {
                    None => missed.push(format!("{col} not measured")),
                    Some(r) if r > x || (strict && r >= x) => missed.push(format!("{r:.2}× {col}")),
                    Some(_) => {}
                },
                Target::Below(x) if strata > x => {
                    missed.push(format!("{} > {}", fmt_value(self.unit, strata), fmt_value(self.unit, x)))
                }
                Target::Below(_) => {}
            }
        }
        if missed.is_empty() { "yes".into() } else { format!("**no**: {}", missed.join("; ")) }
    }

    /// Every sample of every column, for the notes on spread.
    pub fn spread(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .filter_map(|c| {
                let v = self.samples.get(c)?;
                let all: Vec<String> = v.iter().map(|x| fmt_value(self.unit, *x)).collect();
                Some(format!("{c} {}", all.join(", ")))
            })
            .collect();
        format!("{}: {}", self.label, cols.join("; "))
    }
}

/// The rows as one markdown table: a column per tool, Strata ÷ each other tool, target, met.
pub fn table(rows: &[Row]) -> String {
    let mut others: Vec<&str> = Vec::new();
    for c in rows.iter().flat_map(|r| &r.cols) {
        if *c != "strata" && !others.contains(c) {
            others.push(c);
        }
    }
    let cols: Vec<&str> = others.iter().copied().chain(["strata"]).collect();
    let mut out = String::from("| workload |");
    for c in &cols {
        let _ = write!(out, " {c} |");
    }
    for c in &others {
        let _ = write!(out, " ÷ {c} |");
    }
    let _ = writeln!(out, " target | met |\n|{}", "---|".repeat(1 + cols.len() + others.len() + 2));
    for r in rows {
        let _ = write!(out, "| {} |", r.label);
        for c in &cols {
            let _ = write!(out, " {} |", r.median(c).map(|v| fmt_value(r.unit, v)).unwrap_or_default());
        }
        for c in &others {
            let _ = write!(out, " {} |", r.ratio(c).map(|x| format!("{x:.2}")).unwrap_or_default());
        }
        let _ = writeln!(out, " {} | {} |", r.target_words(), r.verdict());
    }
    out
}

/// Where this bench's section of `benches/RESULTS.md` starts and ends.
pub const BEGIN: &str = "<!-- registry: written by `cargo bench --bench registry`; the union bench keeps it -->";
pub const END: &str = "<!-- registry: end; notes below this line are kept -->";

/// `old` (the whole of `RESULTS.md`) with this bench's section replaced by `section`, or
/// `section` appended when there is none yet.
pub fn splice(old: &str, section: &str) -> String {
    let block = format!("{BEGIN}\n{section}{END}\n");
    match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let rest = &old[e + END.len()..];
            format!("{}{block}{}", &old[..b], rest.strip_prefix('\n').unwrap_or(rest))
        }
        _ => {
            let sep = if old.is_empty() || old.ends_with("\n\n") {
                ""
            } else if old.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{old}{sep}{block}")
        }
    }
}

/// Checks of the code above, run by `cargo test` (a `harness = false` target gets no `#[test]`).
pub fn self_check() -> anyhow::Result<()> {
    use anyhow::ensure;
    let first = splice("# Benchmark results\n\nunion tables\n", "A\n");
    ensure!(first == format!("# Benchmark results\n\nunion tables\n\n{BEGIN}\nA\n{END}\n"), "splice: {first}");
    let second = splice(&format!("{first}\nregistry notes\n"), "B\n");
    let want = format!("# Benchmark results\n\nunion tables\n\n{BEGIN}\nB\n{END}\n\nregistry notes\n");
    ensure!(second == want, "splice again: {second}");
    let row = |strata: f64, other: f64, strict: bool| Row {
        label: "pull".into(),
        unit: Unit::Seconds,
        cols: vec!["podman", "strata"],
        targets: vec![Target::Times { col: "podman", x: if strict { 1.0 } else { 0.5 }, strict }],
        samples: BTreeMap::from([("podman", vec![other, other * 3.0, other]), ("strata", vec![strata])]),
    };
    ensure!(row(1.0, 2.0, false).verdict() == "yes");
    ensure!(row(1.5, 2.0, false).verdict() == "**no**: 0.75× podman");
    ensure!(row(2.0, 2.0, true).verdict() == "**no**: 1.00× podman");
    ensure!(row(2.0, 2.0, true).target_words() == "< podman");
    ensure!(median(&[3.0, 1.0, 2.0, 10.0]) == Some(2.5));
    Ok(())
}
