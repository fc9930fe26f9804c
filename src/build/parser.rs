//! A Dockerfile as a list of instructions, parsed as BuildKit parses it
//! (`frontend/dockerfile/parser/parser.go`): parser directives at the top (`# syntax=`,
//! `# escape=`, `# check=`), comments, line continuations with the escape character (blank
//! and comment lines inside a continuation skipped), heredocs (`RUN <<EOF`, `COPY <<-EOT /f`)
//! and each instruction's argument form ([`super::args`]). Words are not expanded here.

use super::args::{self, Args, ArgsError};
use super::shell::Lexer;

/// A Dockerfile that cannot be parsed; names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An instruction's arguments.
    #[error("line {line}: {}", printable(&.source.to_string()))]
    Args {
        /// The first line of the instruction.
        line: usize,
        /// What is wrong.
        source: ArgsError,
    },
    /// A parser directive.
    #[error("line {line}: {}", printable(.reason))]
    Directive {
        /// Its line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A heredoc with no terminator line.
    #[error("line {line}: unterminated heredoc {name:?}")]
    UnterminatedHeredoc {
        /// The instruction's first line.
        line: usize,
        /// The terminator looked for.
        name: String,
    },
    /// No instruction at all.
    #[error("file with no instructions")]
    Empty,
}

/// `s` with control characters escaped (`\r`, `\u{1b}`): a message quoting the Dockerfile is
/// one line on a terminal.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word (`EOF`).
    pub name: String,
    /// The file descriptor it is for (`3<<EOF`), 0 by default.
    pub fd: u32,
    /// Whether variables in the content are expanded (an unquoted terminator).
    pub expand: bool,
    /// `<<-`: leading tabs of the content and of the terminator line are removed.
    pub chomp: bool,
    /// The lines between the instruction and the terminator, each with its newline.
    pub content: String,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword as written (`RUN`, `run`).
    pub keyword: String,
    /// The leading `--flags`, unparsed.
    pub flags: Vec<String>,
    /// The arguments.
    pub args: Args,
    /// `ONBUILD`'s instruction.
    pub sub: Option<Box<Instruction>>,
    /// The heredocs of RUN, COPY and ADD.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text after continuations were joined.
    pub original: String,
    /// Its first and last line in the file (1-based).
    pub lines: (usize, usize),
}

impl Instruction {
    /// The keyword in lower case.
    pub fn command(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// BuildKit's dump of the instruction: `(run "echo hi")`, `(copy ["--from=a"] "x" "y")`.
    pub fn dump(&self) -> String {
        let mut s = self.command();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", flags.join(" ")));
        }
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" {}", sub.dump()));
        }
        for w in &self.args.words {
            s.push(' ');
            s.push_str(&go_quote(w));
        }
        format!("({s})")
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
    /// The escape character in force.
    pub escape: char,
    /// The `syntax` directive, if any (recorded; Strata has one frontend).
    pub syntax: Option<String>,
}

/// The parser directives at the top of the file; they end at the first other line.
struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    /// Reads `line` (newline and leading blanks removed) as a possible directive.
    fn read(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = line.strip_prefix('#').and_then(|r| directive(r.trim_start())) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        let bad = |reason: String| ParseError::Directive { line: number, reason };
        if self.seen.contains(&key) {
            return Err(bad(format!("only one {key} parser directive can be used")));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" | "`" => self.escape = value.chars().next().unwrap_or('\\'),
                _ => return Err(bad(format!("invalid escape token '{value}' does not match ` or \\"))),
            },
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

/// `key = value` of a directive: a letter then letters/digits, `=`, a non-empty value.
fn directive(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    let key = &s[..end];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = s[end..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and blanks after it); `None` when the line does not
/// continue. An escaped escape character does not continue the line.
fn continued(line: &str, escape: char) -> Option<&str> {
    let body = line.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    (!body.ends_with(escape)).then_some(body)
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut d = Directives { escape: '\\', syntax: None, seen: Vec::new(), done: false };
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end_matches(['\r', '\n']).trim_start();
        i += 1;
        let start = i;
        d.read(line, i)?;
        let line = if is_comment(line) { "" } else { line };
        let (mut buf, mut ended) = match continued(line, d.escape) {
            Some(b) => (b.to_string(), false),
            None => (line.to_string(), true),
        };
        if ended && buf.is_empty() {
            continue;
        }
        while !ended && i < lines.len() {
            let raw = lines[i].trim_end_matches(['\r', '\n']);
            i += 1;
            d.read(raw, i)?;
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            match continued(raw, d.escape) {
                Some(b) => buf.push_str(b),
                None => {
                    buf.push_str(raw);
                    ended = true;
                }
            }
        }
        let mut ins = instruction(&buf, d.escape).map_err(|source| ParseError::Args { line: start, source })?;
        if ins.may_have_heredocs() && buf.contains("<<") {
            for mut h in heredocs_of(&buf) {
                h.content = heredoc_body(&lines, &mut i, &h)
                    .ok_or_else(|| ParseError::UnterminatedHeredoc { line: start, name: h.name.clone() })?;
                ins.heredocs.push(h);
            }
        }
        ins.lines = (start, i);
        out.push(ins);
    }
    if out.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(Dockerfile { instructions: out, escape: d.escape, syntax: d.syntax })
}

/// The lines after `*i` up to the terminator of `h` (consumed); `None` if there is none.
fn heredoc_body(lines: &[&str], i: &mut usize, h: &Heredoc) -> Option<String> {
    let mut content = String::new();
    while *i < lines.len() {
        let raw = lines[*i];
        *i += 1;
        let mut end = raw.trim_end_matches(['\r', '\n']);
        if h.chomp {
            end = end.trim_start_matches('\t');
        }
        if end == h.name {
            return Some(content);
        }
        content.push_str(raw);
    }
    None
}

/// One instruction from its joined line.
fn instruction(line: &str, escape: char) -> Result<Instruction, ArgsError> {
    let (keyword, flags, rest) = args::split_command(line, escape);
    let mut sub = None;
    let args = match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => args::maybe_json_list(&rest)?,
        "arg" => Args { words: args::words(&rest, escape), json: false },
        "cmd" | "entrypoint" | "run" | "shell" => args::maybe_json(&rest)?,
        "env" => args::name_values(&rest, "ENV", escape)?,
        "label" => args::name_values(&rest, "LABEL", escape)?,
        "expose" | "from" => args::blank_separated(&rest),
        "healthcheck" => args::health(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => args::string(&rest),
        "onbuild" => {
            if !rest.is_empty() {
                sub = Some(Box::new(instruction(&rest, escape)?));
            }
            Args::default()
        }
        _ => args::string(&rest),
    };
    Ok(Instruction { keyword, flags, args, sub, heredocs: Vec::new(), original: line.to_string(), lines: (0, 0) })
}

impl Instruction {
    /// RUN, COPY and ADD in shell form (also under ONBUILD) take heredocs.
    fn may_have_heredocs(&self) -> bool {
        let ins = self.sub.as_deref().unwrap_or(self);
        matches!(ins.command().as_str(), "add" | "copy" | "run") && !ins.args.json
    }
}

/// The heredoc markers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) among the words of `line`.
fn heredocs_of(line: &str) -> Vec<Heredoc> {
    let none = std::collections::BTreeMap::<String, String>::new();
    let raw = Lexer { raw_quotes: true, raw_escapes: true, skip_unset: true, ..Lexer::new('\\') };
    let words = raw.words(line, &none).unwrap_or_default();
    words.iter().filter_map(|w| heredoc_marker(w)).collect()
}

/// A heredoc from one word: `[fd]<<[-]NAME`, the name possibly quoted (then not expanded).
pub fn heredoc_marker(word: &str) -> Option<Heredoc> {
    let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let none = std::collections::BTreeMap::<String, String>::new();
    let mut lex = Lexer { skip_unset: true, ..Lexer::new('\\') };
    let cooked = lex.words(rest, &none).ok()?;
    let [name] = cooked.as_slice() else { return None };
    lex.raw_quotes = true;
    let raw = lex.words(rest, &none).ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Heredoc { name: name.clone(), fd: word[..digits].parse().unwrap_or(0), expand, chomp, content: String::new() })
}

/// The content of a `<<-` heredoc: each line's leading tabs removed.
pub fn chomp(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// A string quoted as Go's `strconv.Quote` does (for [`Instruction::dump`]).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredocs_are_attached() {
        let df = parse("FROM x\nRUN <<EOF\necho a\necho b\nEOF\nCOPY <<-\"END\" /f\n\t$X\n\tEND\nRUN ls\n").unwrap();
        let run = &df.instructions[1];
        assert_eq!(run.heredocs[0].content, "echo a\necho b\n");
        assert_eq!(run.lines, (2, 5));
        let copy = &df.instructions[2].heredocs[0];
        assert!(copy.chomp && !copy.expand);
        assert_eq!(copy.name, "END");
        assert_eq!(df.instructions[3].dump(), "(run \"ls\")");
        assert!(matches!(parse("RUN <<EOF\nls\n"), Err(ParseError::UnterminatedHeredoc { line: 1, .. })));
    }

    #[test]
    fn directives_only_at_the_top() {
        let df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n# escape=\\\n").unwrap();
        assert_eq!((df.escape, df.syntax.as_deref()), ('`', Some("docker/dockerfile:1")));
        assert!(parse("# escape=`\n# escape=`\nFROM x").is_err());
        assert!(matches!(parse("# only a comment\n"), Err(ParseError::Empty)));
    }
}
