//! Text made fit for a person: compact JSON indented for `--dry-run` (only re-spaced; strings
//! are copied byte for byte), and outside text cut and cleaned for a log line.

/// At most `max` characters, control characters replaced: for logs, messages and prefixd's
/// reason.
pub fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn json(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for c in compact.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                depth += 1;
                out.push(c);
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn indents_without_touching_strings() {
        let got = super::json(r#"{"a":"x,{y}: \"z\"","b":[1,2],"c":{}}"#);
        assert_eq!(
            got,
            "{\n  \"a\": \"x,{y}: \\\"z\\\"\",\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {\n    \n  }\n}"
        );
    }
}
