//! The Dockerfile instructions `strata commit -c` applies to the new image's runtime config
//! (image-spec `config.md`, the `config` object): `CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`,
//! `EXPOSE`, `LABEL`, `USER`, `VOLUME` — what `docker commit --change` accepts, minus `ONBUILD`.
//!
//! `CMD` and `ENTRYPOINT` take the JSON form (`["a","b"]`) or the shell form (`a b`, run as
//! `/bin/sh -c "a b"`); `ENV` and `LABEL` take `K=V` pairs (quotes and backslashes as a shell
//! reads them) or the legacy `ENV K V`.

use serde_json::{Map, Value};

/// An instruction that cannot be applied; names the instruction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InstructionError {
    /// Not an instruction `commit -c` knows.
    #[error("-c {0:?}: unknown instruction (CMD, ENTRYPOINT, ENV, WORKDIR, EXPOSE, LABEL, USER or VOLUME)")]
    Unknown(String),
    /// Known, but badly written.
    #[error("-c {change:?}: {reason}")]
    Syntax {
        /// The instruction as given.
        change: String,
        /// What is wrong.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, InstructionError>;

/// Applies one instruction to `config` (the image config's `config` object).
pub fn apply(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let trimmed = change.trim();
    let (word, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    let rest = rest.trim();
    let syntax = |reason: &str| InstructionError::Syntax { change: change.to_string(), reason: reason.to_string() };
    if rest.is_empty() {
        return Err(syntax("needs an argument"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.insert("Cmd".into(), command(rest).map_err(|r| syntax(&r))?),
        "ENTRYPOINT" => config.insert("Entrypoint".into(), command(rest).map_err(|r| syntax(&r))?),
        "WORKDIR" => config.insert("WorkingDir".into(), Value::String(rest.to_string())),
        "USER" => config.insert("User".into(), Value::String(rest.to_string())),
        "ENV" => return env(config, rest).map_err(|r| syntax(&r)),
        "LABEL" => return labels(config, rest).map_err(|r| syntax(&r)),
        "EXPOSE" => return expose(config, rest).map_err(|r| syntax(&r)),
        "VOLUME" => return volumes(config, rest).map_err(|r| syntax(&r)),
        _ => return Err(InstructionError::Unknown(change.to_string())),
    };
    Ok(())
}

/// The JSON form, or the shell form wrapped in `/bin/sh -c`.
fn command(rest: &str) -> std::result::Result<Value, String> {
    if rest.starts_with('[') {
        let v: Vec<String> = serde_json::from_str(rest).map_err(|e| format!("not a JSON array of strings: {e}"))?;
        return Ok(Value::from(v));
    }
    Ok(Value::from(vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()]))
}

/// `K=V ...` pairs, or `K V` (legacy: the rest of the line is the value).
fn pairs(rest: &str, legacy: bool) -> std::result::Result<Vec<(String, String)>, String> {
    let words = shell_words(rest)?;
    if legacy && !words[0].contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).ok_or("needs K=V or K V")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not K=V")),
        })
        .collect()
}

fn env(config: &mut Map<String, Value>, rest: &str) -> std::result::Result<(), String> {
    let mut list: Vec<String> = match config.get("Env") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    for (k, v) in pairs(rest, true)? {
        let prefix = format!("{k}=");
        let entry = format!("{k}={v}");
        match list.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(e) => *e = entry,
            None => list.push(entry),
        }
    }
    config.insert("Env".into(), Value::from(list));
    Ok(())
}

/// Adds `items` to the object at `key` (made if missing).
fn add_to(config: &mut Map<String, Value>, key: &str, items: Vec<(String, Value)>) {
    let mut m = match config.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.extend(items);
    config.insert(key.into(), Value::Object(m));
}

fn labels(config: &mut Map<String, Value>, rest: &str) -> std::result::Result<(), String> {
    let pairs = pairs(rest, false)?;
    add_to(config, "Labels", pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    Ok(())
}

fn expose(config: &mut Map<String, Value>, rest: &str) -> std::result::Result<(), String> {
    let mut ports = Vec::new();
    for p in rest.split_whitespace() {
        let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let ok_num = num.split('-').all(|n| n.parse::<u16>().is_ok());
        if !ok_num || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(format!("{p:?} is not PORT[/tcp|udp|sctp]"));
        }
        ports.push((format!("{num}/{proto}"), Value::Object(Map::new())));
    }
    add_to(config, "ExposedPorts", ports);
    Ok(())
}

fn volumes(config: &mut Map<String, Value>, rest: &str) -> std::result::Result<(), String> {
    let paths: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).map_err(|e| format!("not a JSON array of strings: {e}"))?
    } else {
        rest.split_whitespace().map(str::to_string).collect()
    };
    add_to(config, "Volumes", paths.into_iter().map(|p| (p, Value::Object(Map::new()))).collect());
    Ok(())
}

/// Splits a line into words as a shell does: whitespace separates, quotes group, `\` escapes.
fn shell_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', Some('\'')) => cur.get_or_insert_default().push(c),
            ('\\', _) => cur.get_or_insert_default().push(chars.next().ok_or("ends with a backslash")?),
            (q, None) if q == '"' || q == '\'' => {
                quote = Some(q);
                cur.get_or_insert_default();
            }
            (q, Some(open)) if q == open => quote = None,
            (w, None) if w.is_whitespace() => words.extend(cur.take()),
            (other, _) => cur.get_or_insert_default().push(other),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    words.extend(cur);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut m = Map::new();
        m.insert("Env".into(), serde_json::json!(["PATH=/bin", "A=1"]));
        for c in changes {
            apply(&mut m, c).unwrap();
        }
        Value::Object(m)
    }

    #[test]
    fn applies_every_instruction() {
        let v = applied(&[
            "CMD [\"cat\", \"/f\"]",
            "entrypoint /init --x",
            "ENV A=2 B=\"two words\"",
            "ENV LEGACY some value",
            "WORKDIR /data",
            "EXPOSE 80 53/udp",
            "LABEL org.x=1 y='a b'",
            "USER 1000:1000",
            "VOLUME /v",
        ]);
        assert_eq!(v["Cmd"], serde_json::json!(["cat", "/f"]));
        assert_eq!(v["Entrypoint"], serde_json::json!(["/bin/sh", "-c", "/init --x"]));
        assert_eq!(v["Env"], serde_json::json!(["PATH=/bin", "A=2", "B=two words", "LEGACY=some value"]));
        assert_eq!(v["WorkingDir"], "/data");
        assert_eq!(v["ExposedPorts"], serde_json::json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"], serde_json::json!({"org.x": "1", "y": "a b"}));
        assert_eq!(v["User"], "1000:1000");
        assert_eq!(v["Volumes"], serde_json::json!({"/v": {}}));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let mut m = Map::new();
        assert!(matches!(apply(&mut m, "RUN rm -rf /"), Err(InstructionError::Unknown(_))));
        assert!(matches!(apply(&mut m, "CMD"), Err(InstructionError::Syntax { .. })));
        assert!(matches!(apply(&mut m, "CMD [\"a\""), Err(InstructionError::Syntax { .. })));
        assert!(matches!(apply(&mut m, "EXPOSE http"), Err(InstructionError::Syntax { .. })));
        assert!(matches!(apply(&mut m, "LABEL novalue"), Err(InstructionError::Syntax { .. })));
        assert!(matches!(apply(&mut m, "ENV A=\"open"), Err(InstructionError::Syntax { .. })));
        assert!(m.is_empty());
    }
}
