//! `--format` templates, the part of Go's `text/template` that `docker ... --format` is mostly
//! given: text with `{{.Field.Sub}}`, `{{json .Field}}` and `{{.}}` actions on a JSON value.

use anyhow::{Context, bail};
use serde_json::Value;

/// Fills `template` from `value`: a string field as its text, anything else as JSON; a field
/// that is not there as `<no value>` (as Go does).
pub fn render(template: &str, value: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").with_context(|| format!("template {template:?}: unclosed action"))?;
        out.push_str(&action(rest[start + 2..start + end].trim(), value, template)?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One action: `.A.B`, `json .A.B`.
fn action(text: &str, value: &Value, template: &str) -> anyhow::Result<String> {
    let (json, path) = match text.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, text),
    };
    let Some(path) = path.strip_prefix('.') else {
        bail!("template {template:?}: unsupported action {{{{{text}}}}} (fields like .Name, json .Labels)")
    };
    let mut v = value;
    for field in path.split('.').filter(|f| !f.is_empty()) {
        match v.get(field) {
            Some(next) => v = next,
            None => return Ok("<no value>".into()),
        }
    }
    Ok(match v {
        Value::String(s) if !json => s.clone(),
        other => serde_json::to_string(other)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_json() {
        let v = serde_json::json!({"Name": "v", "Labels": {"a": "1"}, "RW": true});
        assert_eq!(render("{{ .Name }}:{{.Labels.a}}:{{.RW}}", &v).unwrap(), "v:1:true");
        assert_eq!(render("{{json .Labels}} {{.Nope}}", &v).unwrap(), r#"{"a":"1"} <no value>"#);
        assert_eq!(render("{{json .Name}}", &v).unwrap(), r#""v""#);
        assert!(render("{{.Name", &v).is_err());
        assert!(render("{{range .}}", &v).is_err());
    }
}
