//! serde values written as YAML, block style, for the manifests people read and edit.
//!
//! Keys are plain where YAML cannot read them otherwise (`apiVersion`, `dev.envkit.lock`),
//! quoted where it could (`"on"`, `"5432/tcp"`). Every string value is double-quoted with JSON's escapes (a subset of YAML's double-quoted style),
//! so no value is ever read as a number, a boolean, `null` or a comment: `"5432"` stays a
//! string and `5432` a number, whatever the value looks like.

use serde_json::Value;

/// `value` as one YAML document (no `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Several documents, each after a `---` line.
pub fn to_yaml_documents(values: &[Value]) -> String {
    values
        .iter()
        .map(|value| format!("---\n{}", to_yaml(value)))
        .collect()
}

fn inline(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        // Strings, numbers, booleans and null are written as JSON writes them.
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// A key as written: plain when YAML cannot read it as anything but that string, else quoted.
fn key(text: &str) -> String {
    const WORDS: &[&str] = &[
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
    ];
    let plain = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        Value::String(text.to_string()).to_string()
    }
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (name, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(name));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key goes on the dash's line, the rest line up under it.
                let mut first = true;
                for (name, value) in map {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&key(name));
                    out.push(':');
                    write_value(out, value, indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_list(out, inner, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// The value after `key:`, on the same line when inline, else indented below.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    if !is_block(value) {
        out.push(' ');
        out.push_str(&inline(value));
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        Value::Object(map) => write_map(out, map, indent + 2),
        Value::Array(items) => write_list(out, items, indent + 2),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_lists() {
        let value = json!({
            "apiVersion": "v1",
            "spec": {
                "ports": [{"port": 5432, "name": "tcp-5432"}],
                "args": ["-c", "echo 'a: b' # not a comment"],
                "empty": {},
                "none": [],
                "nested": [["a"], []],
            },
            "on": true,
            "version": "1.0",
        });
        let text = to_yaml(&value);
        assert_eq!(
            text,
            r#"apiVersion: "v1"
"on": true
spec:
  args:
    - "-c"
    - "echo 'a: b' # not a comment"
  empty: {}
  nested:
    -
      - "a"
    - []
  none: []
  ports:
    - name: "tcp-5432"
      port: 5432
version: "1.0"
"#
        );
    }

    #[test]
    fn documents_are_separated() {
        let text = to_yaml_documents(&[json!({"a": 1}), json!({"b": "x"})]);
        assert_eq!(text, "---\na: 1\n---\nb: \"x\"\n");
    }
}
