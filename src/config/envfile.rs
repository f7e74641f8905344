//! The shell subset people write in `/etc/default/*`: `KEY=value`, `export KEY=value`,
//! 'single' and "double" quotes, `#` comments. Nothing is expanded or executed: a `$` or a
//! backtick is kept literally and reported, because the shell would have done something else.

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Assign {
        line: usize,
        key: String,
        value: String,
        /// Set when the value held something a shell would expand; we took it literally.
        literal_warning: Option<&'static str>,
    },
    Malformed {
        line: usize,
        reason: &'static str,
    },
}

/// Lines longer than this are not configuration; reject them instead of keeping them in memory.
const MAX_LINE: usize = 64 * 1024;

pub fn parse(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    // Editors on other systems start a file with a byte-order mark; it is not part of line 1.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.len() > MAX_LINE {
            out.push(Line::Malformed {
                line,
                reason: "line longer than 64 KiB",
            });
            continue;
        }
        let s = raw.trim_start_matches([' ', '\t']);
        if s.is_empty() || s.starts_with('#') {
            continue;
        }
        out.push(match parse_assignment(s) {
            // `export NAME` alone is valid shell: it sets nothing here.
            Err(EXPORT_ONLY) => continue,
            Ok((key, value, literal_warning)) => Line::Assign {
                line,
                key: key.to_string(),
                value,
                literal_warning,
            },
            Err(reason) => Line::Malformed { line, reason },
        });
    }
    out
}

type Assignment<'a> = (&'a str, String, Option<&'static str>);

const EXPORT_ONLY: &str = "export without a value";

fn parse_assignment(s: &str) -> Result<Assignment<'_>, &'static str> {
    let before_export = s.len();
    let s = match s.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start_matches([' ', '\t']),
        _ => s,
    };
    let Some((key, rest)) = s.split_once('=') else {
        return Err(if s.len() < before_export && is_name(s.trim_end()) {
            EXPORT_ONLY
        } else {
            "expected KEY=value"
        });
    };
    if !is_name(key) {
        return Err("not a variable name before '='");
    }
    let (value, warning) = parse_value(rest)?;
    Ok((key, value, warning))
}

fn is_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

const EXPANSION: &str = "'$' or '`' taken literally (no expansion or command substitution)";

fn parse_value(s: &str) -> Result<(String, Option<&'static str>), &'static str> {
    let mut value = String::new();
    let mut warning = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated single quote"),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e @ ('"' | '\\' | '$' | '`')) => value.push(e),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => return Err("unterminated double quote"),
                    },
                    Some(c) => {
                        if c == '$' || c == '`' {
                            warning = Some(EXPANSION);
                        }
                        value.push(c);
                    }
                    None => return Err("unterminated double quote"),
                }
            },
            ' ' | '\t' => {
                // After unquoted whitespace only a comment may follow: `KEY=a b` would run `b`.
                let rest: String = chars.collect();
                let rest = rest.trim_start_matches([' ', '\t']);
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err("unquoted space in value (quote the value)");
            }
            '\\' => match chars.next() {
                Some(e) => value.push(e),
                None => return Err("trailing backslash (line continuation is not supported)"),
            },
            '`' => {
                // Command substitution: kept whole, spaces included, as the shell would group it.
                warning = Some(EXPANSION);
                value.push(c);
                loop {
                    match chars.next() {
                        Some('`') => break value.push('`'),
                        Some(c) => value.push(c),
                        None => return Err("unterminated backtick"),
                    }
                }
            }
            '$' => {
                warning = Some(EXPANSION);
                value.push(c);
                let close = match chars.peek() {
                    Some('(') => ')',
                    Some('{') => '}',
                    _ => continue,
                };
                let open = chars.next().unwrap_or(close);
                value.push(open);
                let mut depth: usize = 1;
                while depth > 0 {
                    match chars.next() {
                        Some(c) => {
                            // Saturating: a count over text from outside never panics
                            // (`open` and `close` differ, and the line is at most 64 KiB).
                            depth = depth.saturating_add(usize::from(c == open));
                            depth = depth.saturating_sub(usize::from(c == close));
                            value.push(c);
                        }
                        None => return Err("unterminated $( or ${"),
                    }
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err("shell operator in value (quote the value)");
            }
            c => value.push(c),
        }
    }
    Ok((value, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Line {
        let mut lines = parse(input);
        assert_eq!(lines.len(), 1, "{input:?} gave {lines:?}");
        lines.remove(0)
    }

    fn value(input: &str) -> (String, String, bool) {
        match one(input) {
            Line::Assign {
                key,
                value,
                literal_warning,
                ..
            } => (key, value, literal_warning.is_some()),
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn real_world_shapes() {
        // (line, key, value, warned)
        let cases: &[(&str, &str, &str, bool)] = &[
            (
                "PREFIXD_API=http://10.0.0.1:8080",
                "PREFIXD_API",
                "http://10.0.0.1:8080",
                false,
            ),
            ("export PREFIXD_TOKEN=abc", "PREFIXD_TOKEN", "abc", false),
            ("export\tPREFIXD_TOKEN=abc", "PREFIXD_TOKEN", "abc", false),
            (
                "  PREFIXD_LOG=/var/log/x.log",
                "PREFIXD_LOG",
                "/var/log/x.log",
                false,
            ),
            (
                "PREFIXD_TOKEN='s3cr#t $x'",
                "PREFIXD_TOKEN",
                "s3cr#t $x",
                false,
            ),
            (
                "PREFIXD_TOKEN=\"a \\\"b\\\" c\"",
                "PREFIXD_TOKEN",
                "a \"b\" c",
                false,
            ),
            ("K=\"back\\\\slash\"", "K", "back\\slash", false),
            ("K=\"dollar \\$HOME\"", "K", "dollar $HOME", false),
            ("K=\"keep \\n as is\"", "K", "keep \\n as is", false),
            ("K=\"$HOME/x\"", "K", "$HOME/x", true),
            ("K=$(cat /etc/token)", "K", "$(cat /etc/token)", true),
            ("K=`id`", "K", "`id`", true),
            ("K=${X:-y}", "K", "${X:-y}", true),
            ("K=$(cat /etc/token) # note", "K", "$(cat /etc/token)", true),
            ("K=$HOME", "K", "$HOME", true),
            ("K=", "K", "", false),
            ("K=''", "K", "", false),
            ("K=\"\"", "K", "", false),
            ("K=value # comment", "K", "value", false),
            ("K=value#not-a-comment", "K", "value#not-a-comment", false),
            ("K='a'\"b\"c", "K", "abc", false),
            ("K=value\r", "K", "value", false),
            ("K=a\\ b", "K", "a b", false),
            ("_K1=x", "_K1", "x", false),
            (
                "UNBAN_QUERY_DELAY_SECONDS=0.5   ",
                "UNBAN_QUERY_DELAY_SECONDS",
                "0.5",
                false,
            ),
            ("K=http://h/?a=b=c", "K", "http://h/?a=b=c", false),
            ("exportK=1", "exportK", "1", false),
            ("K='multi word' # note", "K", "multi word", false),
            ("K=é日本", "K", "é日本", false),
        ];
        for (input, key, val, warned) in cases {
            assert_eq!(
                value(input),
                (key.to_string(), val.to_string(), *warned),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_and_a_bare_export_are_taken_as_the_shell_takes_them() {
        let lines =
            parse("\u{feff}PREFIXD_API=http://p:8080\nexport PREFIXD_TOKEN\nexport\tX \nB=2\n");
        assert_eq!(
            lines,
            vec![
                Line::Assign {
                    line: 1,
                    key: "PREFIXD_API".into(),
                    value: "http://p:8080".into(),
                    literal_warning: None
                },
                Line::Assign {
                    line: 4,
                    key: "B".into(),
                    value: "2".into(),
                    literal_warning: None
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let cases: &[&str] = &[
            "just words",
            "1KEY=x",
            "KEY-NAME=x",
            "=x",
            "K='unterminated",
            "K=\"unterminated",
            "K=\"ends in backslash\\",
            "K=a b",
            "K=x; rm -rf /",
            "K=a|b",
            "K=trailing\\",
            "export",
            "K=$(unterminated",
            "K=`unterminated",
        ];
        for input in cases {
            assert!(
                matches!(one(input), Line::Malformed { line: 1, .. }),
                "{input:?}"
            );
        }
        let long = format!("K={}", "x".repeat(MAX_LINE));
        assert!(matches!(one(&long), Line::Malformed { .. }));
    }

    #[test]
    fn comments_blank_lines_line_numbers_and_duplicates() {
        let text = "# header\n\n   # indented comment\r\nA=1\r\n\nbad line\nA=2\n";
        let lines = parse(text);
        assert_eq!(
            lines,
            vec![
                Line::Assign {
                    line: 4,
                    key: "A".into(),
                    value: "1".into(),
                    literal_warning: None
                },
                Line::Malformed {
                    line: 6,
                    reason: "expected KEY=value"
                },
                Line::Assign {
                    line: 7,
                    key: "A".into(),
                    value: "2".into(),
                    literal_warning: None
                },
            ]
        );
    }
}

/// Properties: an assignment written in any of the shell's quotings reads back as written, on
/// its own line number; any text parses without a panic into numbered lines.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    use crate::proptest_cases as cases;

    #[derive(Debug, Clone)]
    enum Quoting {
        /// `K=value`, only characters the shell takes literally.
        Bare,
        /// `K='value'` (no `'` inside).
        Single,
        /// `K="value"` with `"`, `\`, `$` and `` ` `` escaped.
        Double,
        /// `K="value"` with `$` and `` ` `` left as they are: read literally, with a warning.
        DoubleRaw,
    }

    #[derive(Debug, Clone)]
    enum EnvLine {
        Assign {
            key: String,
            value: String,
            quoting: Quoting,
            export: bool,
            indent: &'static str,
            comment: Option<String>,
        },
        Other(&'static str),
    }

    fn env_line() -> impl Strategy<Value = EnvLine> {
        let quoted = "[a-zA-Z0-9 #'\"\\\\$`=;|&<>()é日\t]{0,12}";
        let assign = (
            "[A-Za-z_][A-Za-z0-9_]{0,10}",
            prop_oneof![
                "[A-Za-z0-9_./:@%+,=é日-]{0,12}".prop_map(|v| (v, Quoting::Bare)),
                quoted.prop_map(|v| (v.replace('\'', ""), Quoting::Single)),
                quoted.prop_map(|v| (v, Quoting::Double)),
                quoted.prop_map(|v| (v, Quoting::DoubleRaw)),
            ],
            any::<bool>(),
            prop::sample::select(vec!["", " ", "\t", "  "]),
            prop::option::of("[a-z #'\"=é]{0,10}"),
        )
            .prop_map(
                |(key, (value, quoting), export, indent, comment)| EnvLine::Assign {
                    key,
                    value,
                    quoting,
                    export,
                    indent,
                    comment,
                },
            );
        let other = prop::sample::select(vec!["", "   ", "# comment", "\t# K=1", "export X"])
            .prop_map(EnvLine::Other);
        prop_oneof![3 => assign, 1 => other]
    }

    impl EnvLine {
        fn text(&self) -> String {
            let (key, value, quoting, export, indent, comment) = match self {
                EnvLine::Assign {
                    key,
                    value,
                    quoting,
                    export,
                    indent,
                    comment,
                } => (key, value, quoting, export, indent, comment),
                EnvLine::Other(s) => return s.to_string(),
            };
            let escape = |specials: &[char]| -> String {
                value
                    .chars()
                    .flat_map(|c| {
                        if specials.contains(&c) {
                            vec!['\\', c]
                        } else {
                            vec![c]
                        }
                    })
                    .collect()
            };
            let v = match quoting {
                Quoting::Bare => value.clone(),
                Quoting::Single => format!("'{value}'"),
                Quoting::Double => format!("\"{}\"", escape(&['"', '\\', '$', '`'])),
                Quoting::DoubleRaw => format!("\"{}\"", escape(&['"', '\\'])),
            };
            let export = if *export { "export " } else { "" };
            let comment = comment
                .as_ref()
                .map(|c| format!(" # {c}"))
                .unwrap_or_default();
            format!("{indent}{export}{key}={v}{comment}")
        }

        fn warns(&self) -> bool {
            matches!(self, EnvLine::Assign { quoting: Quoting::DoubleRaw, value, .. } if value.contains(['$', '`']))
        }
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn assignments_read_back_as_written(
            lines in prop::collection::vec(env_line(), 0..12),
            crlf in any::<bool>(),
            bom in any::<bool>(),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text: String = lines.iter().map(|l| l.text() + end).collect();
            if bom {
                text.insert(0, '\u{feff}');
            }
            let want: Vec<Line> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| match l {
                    EnvLine::Assign { key, value, .. } => Some(Line::Assign {
                        line: i + 1,
                        key: key.clone(),
                        value: value.clone(),
                        literal_warning: l.warns().then_some(EXPANSION),
                    }),
                    EnvLine::Other(_) => None,
                })
                .collect();
            prop_assert_eq!(parse(&text), want, "{:?}", text);
        }

        #[test]
        fn any_text_parses_into_numbered_lines(
            text in prop_oneof![
                any::<String>(),
                prop::collection::vec(
                    prop::sample::select(vec![
                        "K", "export", " ", "\t", "=", "'", "\"", "\\", "$", "$(", "${", ")", "}",
                        "`", "#", ";", "\n", "\r\n", "é", "\u{feff}", "a b",
                    ]),
                    0..40,
                )
                .prop_map(|w| w.concat()),
            ],
        ) {
            let count = text.split('\n').count();
            let mut last = 0;
            for l in parse(&text) {
                let line = match l {
                    Line::Assign { line, key, .. } => {
                        prop_assert!(is_name(&key), "{:?}", key);
                        line
                    }
                    Line::Malformed { line, reason } => {
                        prop_assert!(!reason.is_empty());
                        line
                    }
                };
                prop_assert!(line > last && line <= count, "{} of {}", line, count);
                last = line;
            }
        }
    }
}
