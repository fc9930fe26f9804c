//! Word expansion of Dockerfile arguments as BuildKit does it (`frontend/dockerfile/shell`):
//! quotes, the escape token, `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`,
//! `${VAR+w}`, `${VAR:?w}`, `${VAR?w}`, `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`,
//! `${VAR/p/r}` and `${VAR//p/r}`. No command substitution, no globbing, no `$((…))`.
//!
//! One pass gives both the single expanded word ([`Expansion::word`], what `WORKDIR` or a
//! `LABEL` value gets) and the words the result splits into ([`Expansion::words`]: spaces
//! split where they come from a variable or an unquoted part, never inside quotes), and the
//! names looked up (for the build cache: which build args a step uses).

use std::collections::{BTreeMap, BTreeSet};

/// What variables expand to.
pub trait Vars {
    /// The value of `name`, if it is set (an empty value is set).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// `K=V` entries, the last of a name winning (an image's `Env`).
impl Vars for Vec<String> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
    }
}

/// An input that cannot be expanded (an unterminated quote, a bad `${…}`, `${X:?msg}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {reason}")]
pub struct ExpandError {
    /// The text being expanded.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

/// How a [`Lexer`] reads quotes, escapes and unset variables.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    /// The escape character (`\`, or `` ` `` by the `escape` directive).
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave `$X` / `${X…}` as written when `X` is unset.
    pub skip_unset: bool,
    /// Quotes are ordinary characters (`$X` inside them is expanded): BuildKit's lexer for a
    /// COPY/ADD heredoc's content, which is a file, not Dockerfile words.
    pub skip_quotes: bool,
}

impl Lexer {
    /// A lexer with `escape` as its escape character, everything else off.
    pub fn new(escape: char) -> Lexer {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_unset: false, skip_quotes: false }
    }

    /// Expands `input` with `vars`.
    pub fn expand(&self, input: &str, vars: &dyn Vars) -> Result<Expansion, ExpandError> {
        let mut s = Scan {
            lex: self,
            chars: input.chars().collect(),
            pos: 0,
            vars,
            raw_escapes: self.raw_escapes,
            used: BTreeSet::new(),
        };
        let (word, words) =
            s.until(None, self.raw_escapes).map_err(|reason| ExpandError { input: input.to_string(), reason })?;
        Ok(Expansion { word, words, used: s.used })
    }

    /// The single word `input` expands to.
    pub fn word(&self, input: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
        Ok(self.expand(input, vars)?.word)
    }

    /// The words `input` expands to.
    pub fn words(&self, input: &str, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
        Ok(self.expand(input, vars)?.words)
    }
}

/// The result of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The input expanded as one word.
    pub word: String,
    /// The input expanded and split into words.
    pub words: Vec<String>,
    /// The variable names looked up, set or not.
    pub used: BTreeSet<String>,
}

/// The words being collected: spaces end a word unless they were quoted or escaped.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

type Step<T> = Result<T, String>;

/// One expansion in progress.
struct Scan<'a> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    vars: &'a dyn Vars,
    raw_escapes: bool,
    used: BTreeSet<String>,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn get(&mut self, name: &str) -> Option<String> {
        self.used.insert(name.to_string());
        self.vars.get(name).map(str::to_string)
    }

    /// Reads to the end, or to `stop` (consumed; an error if never found).
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> Step<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.until_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn until_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let v = self.dollar()?;
                    words.add_string(&v);
                    result.push_str(&v);
                }
                '<' => {
                    let v = self.heredoc_marker();
                    words.add_raw_string(&v);
                    result.push_str(&v);
                }
                '\'' | '"' if !self.lex.skip_quotes => {
                    let v = if c == '\'' { self.single_quoted()? } else { self.double_quoted()? };
                    words.add_raw_string(&v);
                    result.push_str(&v);
                }
                _ => {
                    self.pos += 1;
                    if c != self.lex.escape {
                        words.add_char(c);
                        result.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    let Some(e) = self.next() else { break };
                    words.add_raw_char(e);
                    result.push(e);
                }
            }
        }
        match stop {
            Some(s) => Err(format!("unexpected end of statement while looking for matching {s}")),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Step<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Step<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => c = self.next().unwrap_or(n),
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// `<<` and the blanks after it, kept together in one word (a heredoc marker).
    fn heredoc_marker(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    /// `$NAME`, `${NAME}` or `${NAME<op>word}`, the `$` next.
    fn dollar(&mut self) -> Step<String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            Some('}') => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                self.modifier(&name, op, true)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, Some(op), false),
            Some('/') => self.replace(&name),
            op => Err(format!("unsupported modifier ({}) in substitution", op.map(String::from).unwrap_or_default())),
        }
    }

    /// `${NAME[:]<op>word}` after the operator.
    fn modifier(&mut self, name: &str, op: Option<char>, colon: bool) -> Step<String> {
        let ops = format!("{}{}", if colon { ":" } else { "" }, op.map(String::from).unwrap_or_default());
        let pattern_op = matches!(op, Some('#' | '%'));
        if colon && pattern_op {
            return Err(format!("unsupported modifier ({ops}) in substitution"));
        }
        let (word, _) = self.until(Some('}'), pattern_op).map_err(|e| self.missing_brace(e))?;
        let value = self.get(name);
        if self.lex.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{ops}{word}}}"));
        }
        let empty = value.is_none() || (colon && value.as_deref() == Some(""));
        match op {
            Some('-') => Ok(if empty { word } else { value.unwrap_or_default() }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') => match value {
                Some(v) if !empty => Ok(v),
                _ => {
                    let why = if value.is_none() { "is not allowed to be unset" } else { "is not allowed to be empty" };
                    Err(format!("{name}: {}", if word.is_empty() { why } else { &word }))
                }
            },
            Some(op @ ('#' | '%')) => {
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let glob = Glob::parse(pattern)?;
                let value = value.unwrap_or_default();
                Ok(if op == '#' { glob.trim_prefix(&value, greedy) } else { glob.trim_suffix(&value, greedy) })
            }
            _ => Err(format!("unsupported modifier ({ops}) in substitution")),
        }
    }

    /// `${NAME/pattern/replacement}` or `${NAME//pattern/replacement}` after the first `/`.
    fn replace(&mut self, name: &str) -> Step<String> {
        let all = self.peek() == Some('/');
        self.pos += usize::from(all);
        let (pattern, _) = self
            .until(Some('/'), true)
            .map_err(|e| if self.peek().is_none() { "syntax error: missing '/' in ${}".to_string() } else { e })?;
        let (replacement, _) = self.until(Some('}'), true).map_err(|e| self.missing_brace(e))?;
        let value = self.get(name);
        let Some(value) = value else {
            if self.lex.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        Ok(Glob::parse(&pattern)?.replace(&value, &replacement, all))
    }

    fn missing_brace(&self, e: String) -> String {
        if self.peek().is_none() { "syntax error: missing '}'".into() } else { e }
    }

    /// A variable name: letters, digits and `_`; or all digits; or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.peek().filter(|d| d.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphabetic() && !c.is_numeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }
}

/// A shell pattern of `${X#p}`, `${X%p}`, `${X/p/r}`: `*`, `?`, literal characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(Vec<Tok>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Any,
    One,
    Lit(char),
}

impl Glob {
    fn parse(p: &str) -> Step<Glob> {
        let mut toks = Vec::new();
        let mut chars = p.chars().peekable();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '*' => Tok::Any,
                '?' => Tok::One,
                '\\' => match chars.peek() {
                    Some('}' | '/') => continue,
                    Some(&e @ ('*' | '?' | '\\')) => {
                        chars.next();
                        Tok::Lit(e)
                    }
                    other => return Err(format!("invalid pattern ({p}) in substitution: invalid escape {other:?}")),
                },
                c => Tok::Lit(c),
            });
        }
        Ok(Glob(toks))
    }

    /// For each prefix length `0..=s.len()`, whether `s[..len]` matches the whole pattern: one
    /// pass over `s` with the set of pattern positions reached (as an NFA runs), so O(|s|·|p|)
    /// whatever the pattern — backtracking over `*`s takes exponential time on `*a*a*a…b`.
    fn prefix_matches(&self, s: &[char]) -> Vec<bool> {
        let toks = &self.0;
        let close = |set: &mut Vec<bool>| {
            for j in 0..toks.len() {
                if set[j] && toks[j] == Tok::Any {
                    set[j + 1] = true;
                }
            }
        };
        let mut cur = vec![false; toks.len() + 1];
        cur[0] = true;
        close(&mut cur);
        let mut out = Vec::with_capacity(s.len() + 1);
        out.push(cur[toks.len()]);
        for c in s {
            let mut next = vec![false; toks.len() + 1];
            for (j, t) in toks.iter().enumerate().filter(|(j, _)| cur[*j]) {
                match t {
                    Tok::Any => next[j] = true,
                    Tok::One => next[j + 1] = true,
                    Tok::Lit(l) if l == c => next[j + 1] = true,
                    Tok::Lit(_) => {}
                }
            }
            close(&mut next);
            out.push(next[toks.len()]);
            if !next.contains(&true) {
                break;
            }
            cur = next;
        }
        out
    }

    /// The length of the shortest or longest prefix of `s` that matches.
    fn prefix_len(&self, s: &[char], greedy: bool) -> Option<usize> {
        let fits = self.prefix_matches(s);
        if greedy { fits.iter().rposition(|&m| m) } else { fits.iter().position(|&m| m) }
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        match self.prefix_len(&s, greedy) {
            Some(n) => s[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().rev().collect();
        let reversed = Glob(self.0.iter().rev().copied().collect());
        match reversed.prefix_len(&s, greedy) {
            Some(n) => s[n..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    fn replace(&self, value: &str, with: &str, all: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < s.len() {
            match self.prefix_len(&s[i..], true).filter(|n| *n > 0) {
                Some(n) => {
                    out.push_str(with);
                    i += n;
                    if !all {
                        out.extend(&s[i..]);
                        return out;
                    }
                }
                None => {
                    out.push(s[i]);
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("A", "1"), ("P", "/usr/local/bin"), ("E", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn patterns_and_replacement() {
        let lex = Lexer::new('\\');
        let w = |s: &str| lex.word(s, &env()).unwrap();
        assert_eq!(w("${P#*/}"), "usr/local/bin");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${P%/*}"), "/usr/local");
        assert_eq!(w("${P%%/*}"), "");
        assert_eq!(w("${P/local/x}"), "/usr/x/bin");
        assert_eq!(w("${P//\\//:}"), ":usr:local:bin");
        assert_eq!(w("${E-d}${E:-d}${U-d}"), "dd");
    }

    /// A COPY heredoc's content as BuildKit expands it: quotes are plain characters, the escape
    /// character still escapes.
    #[test]
    fn heredoc_content_expansion() {
        let lex = Lexer { skip_quotes: true, ..Lexer::new('\\') };
        let got = lex.word("a '$A' \"${A}\" \\$A \\\\ c:\\d\n'unclosed", &env()).unwrap();
        assert_eq!(got, "a '1' \"1\" $A \\ c:d\n'unclosed");
    }

    #[test]
    fn records_names_used_and_keeps_unset_when_asked() {
        let mut lex = Lexer::new('\\');
        let e = lex.expand("$A ${B:-x}", &env()).unwrap();
        assert_eq!(e.used.into_iter().collect::<Vec<_>>(), ["A", "B"]);
        lex.skip_unset = true;
        assert_eq!(lex.word("$A $B ${C:-x}", &env()).unwrap(), "1 $B ${C:-x}");
    }
}
