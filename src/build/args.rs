//! The argument forms of Dockerfile instructions, as BuildKit's parser splits them
//! (`frontend/dockerfile/parser/line_parsers.go`, `split_command.go`): leading `--flags`, the
//! JSON form (`["a", "b"]`), whitespace-separated words, `name=value` pairs (ENV, LABEL, ARG)
//! and the `HEALTHCHECK` type. Nothing is expanded here: values keep their quotes and escapes.

/// An argument list that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// `["a", 1]`: JSON, but not all strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStrings,
    /// `ENV A` with neither `=` nor a value.
    #[error("{0} must have two arguments")]
    TwoArguments(String),
    /// `ENV A=1 B` (a word without `=` after the first had one).
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    NoEquals(String),
}

/// What an instruction's arguments are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// The arguments, in order (for ENV/LABEL: name, value, separator, …).
    pub words: Vec<String>,
    /// Whether they came in the JSON form.
    pub json: bool,
}

impl Args {
    fn shell(words: Vec<String>) -> Args {
        Args { words, json: false }
    }
}

/// Whitespace as BuildKit's `[\t\v\f\r ]+` splits.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of blanks (an empty input gives one empty string, as Go's `Split`).
pub fn split_blanks(s: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while out.len() + 1 < limit {
        match rest.find(is_blank) {
            Some(i) => {
                out.push(rest[..i].to_string());
                rest = rest[i..].trim_start_matches(is_blank);
            }
            None => break,
        }
    }
    out.push(rest.to_string());
    out
}

/// Splits a line into its keyword, its `--flags` and the rest (trimmed).
pub fn split_command(line: &str, escape: char) -> (String, Vec<String>, String) {
    let parts = split_blanks(line.trim(), 2);
    match parts.as_slice() {
        [cmd, rest] => {
            let (args, flags) = builder_flags(rest, escape);
            (cmd.clone(), flags, args.trim().to_string())
        }
        _ => (parts[0].clone(), Vec::new(), String::new()),
    }
}

#[derive(PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// The leading words that start with `--` (unquoted, unescaped), and what follows them; a
/// bare `--` ends the flags.
fn builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let rest = |pos: usize| chars[pos..].iter().collect::<String>();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || chars.get(pos + 1) != Some(&'-') {
                return (rest(pos), words);
            }
            phase = Phase::Word;
        }
        let mut c = ch;
        match phase {
            Phase::Word if ch.is_whitespace() => {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            Phase::Word if ch == '\'' || ch == '"' => {
                phase = Phase::Quote(ch);
                blank_ok = true;
                pos += 1;
                continue;
            }
            Phase::Quote(q) if ch == q => {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            _ if ch == escape => {
                if pos + 1 == chars.len() {
                    phase = Phase::Word;
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = chars[pos];
            }
            _ => {}
        }
        word.push(c);
        pos += 1;
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (String::new(), words)
}

/// Words separated by whitespace, quotes and escapes kept as written (ENV, LABEL, ARG).
pub fn words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word if ch.is_whitespace() => {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            Phase::Word if ch == '\'' || ch == '"' => {
                phase = Phase::Quote(ch);
                blank_ok = true;
            }
            Phase::Quote(q) if ch == q => phase = Phase::Word,
            _ => {}
        }
        let escapable = matches!(phase, Phase::Word) || matches!(phase, Phase::Quote(q) if q != '\'');
        if ch == escape && escapable {
            if pos == chars.len() {
                if matches!(phase, Phase::Quote(_)) {
                    phase = Phase::Word;
                }
                continue;
            }
            word.push(ch);
            word.push(chars[pos]);
            pos += 1;
            continue;
        }
        word.push(ch);
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// `name value` (the legacy form: the rest of the line is the value) or `a=1 b=2`; each
/// pair gives three words: name, value, and `""` or `"="`.
pub fn name_values(rest: &str, what: &str, escape: char) -> Result<Args, ArgsError> {
    let ws = words(rest, escape);
    let Some(first) = ws.first() else { return Ok(Args::default()) };
    if !first.contains('=') {
        let parts = split_blanks(rest, 2);
        if parts.len() < 2 {
            return Err(ArgsError::TwoArguments(what.to_string()));
        }
        return Ok(Args::shell(vec![parts[0].clone(), parts[1].clone(), String::new()]));
    }
    let mut out = Vec::new();
    for w in ws {
        let (k, v) = w.split_once('=').ok_or_else(|| ArgsError::NoEquals(w.clone()))?;
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Args::shell(out))
}

/// The JSON form, if `rest` is one: `Ok(None)` when it is not JSON at all.
fn json(rest: &str) -> Result<Option<Args>, ArgsError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else { return Ok(None) };
    let words = values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ArgsError::NotStrings),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Args { words, json: true }))
}

/// JSON, or the whole rest as one string (RUN, CMD, ENTRYPOINT, SHELL).
pub fn maybe_json(rest: &str) -> Result<Args, ArgsError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(json(rest)?.unwrap_or_else(|| Args::shell(vec![rest.to_string()])))
}

/// JSON, or words split on blanks (ADD, COPY, VOLUME).
pub fn maybe_json_list(rest: &str) -> Result<Args, ArgsError> {
    Ok(json(rest)?.unwrap_or_else(|| blank_separated(rest)))
}

/// Words split on blanks (FROM, EXPOSE).
pub fn blank_separated(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::shell(split_blanks(rest, usize::MAX))
}

/// The rest as one string (MAINTAINER, USER, WORKDIR, STOPSIGNAL).
pub fn string(rest: &str) -> Args {
    if rest.is_empty() { Args::default() } else { Args::shell(vec![rest.to_string()]) }
}

/// `HEALTHCHECK NONE`, `HEALTHCHECK CMD …`: the type, then the command in either form.
pub fn health(rest: &str) -> Result<Args, ArgsError> {
    let Some(typ) = rest.split(char::is_whitespace).next().filter(|t| !t.is_empty()) else {
        return Ok(Args::default());
    };
    let mut cmd = maybe_json(rest[typ.len()..].trim_start())?;
    cmd.words.insert(0, typ.to_string());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_the_first_other_word() {
        assert_eq!(split_command("COPY --from=a --chown=1:1 x y", '\\').1, ["--from=a", "--chown=1:1"]);
        assert_eq!(split_command("COPY -- --x y", '\\'), ("COPY".into(), vec![], "--x y".into()));
        assert_eq!(split_command("RUN --mount=\"type=cache\" ls", '\\').1, ["--mount=type=cache"]);
    }

    #[test]
    fn name_values_in_both_forms() {
        assert_eq!(name_values("A b c", "ENV", '\\').unwrap().words, ["A", "b c", ""]);
        assert_eq!(name_values("A=1 B=\"x y\"", "ENV", '\\').unwrap().words, ["A", "1", "=", "B", "\"x y\"", "="]);
        assert!(name_values("A", "ENV", '\\').is_err());
        assert!(name_values("A=1 B", "ENV", '\\').is_err());
        assert!(matches!(maybe_json("[1]"), Err(ArgsError::NotStrings)));
    }
}
