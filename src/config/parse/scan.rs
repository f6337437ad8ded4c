//! PHP's INI scanner as php-fpm uses it: one line at a time, quoting, `${ENV}`, comments.

use super::*;

/// Where `${VAR}` values come from.
pub(super) struct Env<'a>(pub(super) Option<&'a HashMap<String, String>>);

impl Env<'_> {
    /// The variable's value; unset is empty, as in PHP.
    fn get(&self, name: &str) -> String {
        match self.0 {
            Some(map) => map.get(name).cloned().unwrap_or_default(),
            None => std::env::var_os(name)
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// One line of a config file, scanned.
#[derive(Debug, PartialEq)]
pub(super) enum Line {
    /// Blank or a comment.
    Empty,
    /// `[name]`.
    Section(String),
    /// `key = value`.
    Directive { key: String, value: String },
    /// `name[key] = value`.
    Array {
        name: String,
        key: String,
        value: String,
    },
}

/// Scans one line the way PHP's INI scanner does for php-fpm; `Err` is a one-line reason.
pub(super) fn scan_line(line: &str, env: &Env) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let text = line.trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with(';') {
        return Ok(Line::Empty);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return scan_section(rest, env).map(Line::Section);
    }
    if text.starts_with('#') {
        return Err("'#' does not start a comment in php-fpm configs; use ';'".to_string());
    }
    let Some(end) = text.find(['=', '[', ';']) else {
        return Err(format!(
            "'{}' has no value (expected key = value)",
            text.trim_end()
        ));
    };
    let key = text[..end].trim_end_matches([' ', '\t']);
    check_key(key)?;
    match text.as_bytes()[end] {
        b'=' => Ok(Line::Directive {
            key: key.to_string(),
            value: scan_value(&text[end + 1..], env)?,
        }),
        b'[' => {
            let rest = &text[end + 1..];
            let close = rest
                .find(']')
                .ok_or_else(|| format!("missing ']' after '{key}['"))?;
            let after = rest[close + 1..].trim_start_matches([' ', '\t']);
            let value = after
                .strip_prefix('=')
                .ok_or_else(|| format!("'{key}[...]' has no value (expected key = value)"))?;
            Ok(Line::Array {
                name: key.to_string(),
                key: rest[..close].trim().to_string(),
                value: scan_value(value, env)?,
            })
        }
        _ => Err(format!("'{key}' has no value (expected key = value)")),
    }
}

/// A directive name must be plain text.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing directive name before '='".to_string());
    }
    match key.chars().find(|c| "&|^$~(){}!\"'\t]".contains(*c)) {
        Some(c) => Err(format!("unexpected '{c}' in directive name '{key}'")),
        None => Ok(()),
    }
}

/// The name of a `[section]`, given the text after `[`. The name is kept exactly as written
/// (php-fpm does not trim it); quotes and `${VAR}` work as in values.
pub(super) fn scan_section(text: &str, env: &Env) -> Result<String, String> {
    let mut name = String::new();
    let mut rest = text;
    loop {
        let Some(c) = rest.chars().next() else {
            return Err("missing ']' at the end of the section header".to_string());
        };
        rest = &rest[c.len_utf8()..];
        match c {
            ']' => break,
            '"' => {
                let (s, r) = scan_double_quoted(rest, env)?;
                name.push_str(&s);
                rest = r;
            }
            '$' if rest.starts_with('{') => {
                let (s, r) = scan_variable(&rest[1..], env)?;
                name.push_str(&s);
                rest = r;
            }
            _ => name.push(c),
        }
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    if !rest.is_empty() && !rest.starts_with(';') {
        return Err(format!("unexpected '{rest}' after the section header"));
    }
    Ok(name)
}

/// One part of a value, as the INI scanner sees it.
#[derive(Debug)]
pub(super) enum Piece {
    /// Unquoted blanks between other pieces.
    Blank(String),
    /// An unquoted run of other characters.
    Word(String),
    /// A quoted string or a `${VAR}`: taken as it is.
    Literal(String),
}

/// Scans the text after `=`: unquoted text, `"double"` (with `\"`, `\\`, `\$` escapes and
/// `${VAR}`) and `'single'` (raw) quoted strings and `${VAR}`, all concatenated, up to a `;`
/// comment. Like PHP, it trims the ends, drops blanks next to double-quoted strings, and
/// turns a lone `yes`/`on`/`true` into `1` and `no`/`off`/`false`/`none`/`null` into ``.
pub(super) fn scan_value(text: &str, env: &Env) -> Result<String, String> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut rest = text;
    let mut after_double_quote = false;
    while let Some(c) = rest.chars().next() {
        match c {
            ';' => break,
            ' ' | '\t' => {
                let blank_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
                if !after_double_quote {
                    pieces.push(Piece::Blank(rest[..blank_len].to_string()));
                }
                rest = &rest[blank_len..];
                continue;
            }
            '"' => {
                if matches!(pieces.last(), Some(Piece::Blank(_))) {
                    pieces.pop();
                }
                let (s, r) = scan_double_quoted(&rest[1..], env)?;
                pieces.push(Piece::Literal(s));
                rest = r;
                after_double_quote = true;
                continue;
            }
            '\'' => {
                let body = &rest[1..];
                let end = body.find('\'').ok_or("unterminated single-quoted string")?;
                if end == 0 {
                    return Err("'' gives no value in php-fpm; use \"\" for an empty string".into());
                }
                pieces.push(Piece::Literal(body[..end].to_string()));
                rest = &body[end + 1..];
            }
            '$' if rest.starts_with("${") => {
                let (s, r) = scan_variable(&rest[2..], env)?;
                pieces.push(Piece::Literal(s));
                rest = r;
            }
            '=' => return Err("unexpected '=' in the value; quote the value".to_string()),
            '|' | '&' | '^' | '~' | '!' | '(' | ')' => {
                return Err(format!(
                    "INI expressions ('{c}') are not supported; quote the value"
                ));
            }
            _ => {
                // Any other character, including a '$' that does not start '${'.
                match pieces.last_mut() {
                    Some(Piece::Word(word)) => word.push(c),
                    _ => pieces.push(Piece::Word(c.to_string())),
                }
                rest = &rest[c.len_utf8()..];
            }
        }
        after_double_quote = false;
    }
    while matches!(pieces.last(), Some(Piece::Blank(_))) {
        pieces.pop();
    }
    if matches!(pieces.first(), Some(Piece::Blank(_))) {
        pieces.remove(0);
    }
    if let [Piece::Word(word)] = pieces.as_slice()
        && let Some(value) = boolean_word(word)
    {
        return Ok(value.to_string());
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Word(w) if boolean_word(&w).is_some() => {
                return Err(format!(
                    "'{w}' is a boolean word and must stand alone; quote the value"
                ));
            }
            Piece::Blank(s) | Piece::Word(s) | Piece::Literal(s) => out.push_str(&s),
        }
    }
    Ok(out)
}

/// What PHP's INI scanner makes of an unquoted boolean word.
pub(super) fn boolean_word(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Some("1"),
        "no" | "off" | "false" | "none" | "null" => Some(""),
        _ => None,
    }
}

/// The body of a double-quoted string (given the text after the opening quote) and the
/// text after the closing quote.
pub(super) fn scan_double_quoted<'t>(
    text: &'t str,
    env: &Env,
) -> Result<(String, &'t str), String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => return Ok((out, rest)),
            '\\' => match rest.chars().next() {
                Some(escaped @ ('"' | '\\' | '$')) => {
                    out.push(escaped);
                    rest = &rest[1..];
                }
                _ => out.push('\\'),
            },
            '$' if rest.starts_with('{') => {
                let (s, r) = scan_variable(&rest[1..], env)?;
                out.push_str(&s);
                rest = r;
            }
            _ => out.push(c),
        }
    }
    Err("unterminated double-quoted string".to_string())
}

/// The value of `${NAME}` (given the text after `${`) and the text after the `}`.
pub(super) fn scan_variable<'t>(text: &'t str, env: &Env) -> Result<(String, &'t str), String> {
    let end = text.find('}').ok_or("missing '}' after '${'")?;
    let name = text[..end].trim();
    if name.is_empty() {
        return Err("empty variable name in '${}'".to_string());
    }
    Ok((env.get(name), &text[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Result<String, String> {
        let env: HashMap<String, String> = [("FOO".to_string(), "foo".to_string())].into();
        scan_value(text, &Env(Some(&env)))
    }

    #[test]
    fn values_scan_like_php() {
        // Each expectation was checked against `php-fpm8.2 -tt`.
        assert_eq!(value(" foo   bar  ; comment").unwrap(), "foo   bar");
        assert_eq!(value(r#" "a\"b\\c\$d\n""#).unwrap(), r#"a"b\c$d\n"#);
        assert_eq!(
            value(" 'single $pool ${FOO} \\n'").unwrap(),
            "single $pool ${FOO} \\n"
        );
        assert_eq!(value(r#" foo"bar"baz"#).unwrap(), "foobarbaz");
        assert_eq!(value(r#" "a"  b"#).unwrap(), "ab");
        assert_eq!(value(" x  'a'").unwrap(), "x  a");
        assert_eq!(value(r#" a b 'c d' "e f""#).unwrap(), "a b c de f");
        assert_eq!(value(" x${UNSET_VARIABLE_FOR_TEST}y").unwrap(), "xy");
        assert_eq!(value(" ${ FOO } bar").unwrap(), "foo bar");
        assert_eq!(value(r#" "h=${FOO}""#).unwrap(), "h=foo");
        assert_eq!(value(" a;b").unwrap(), "a");
        assert_eq!(value(r#" "a;b""#).unwrap(), "a;b");
        assert_eq!(value(" $$pool").unwrap(), "$$pool");
        assert_eq!(value(" a#b{c}").unwrap(), "a#b{c}");
        assert_eq!(value("").unwrap(), "");
        assert_eq!(value(r#" """#).unwrap(), "");
        assert_eq!(value(" [::]:9000").unwrap(), "[::]:9000");
    }

    #[test]
    fn boolean_words_stand_alone() {
        assert_eq!(value(" yes").unwrap(), "1");
        assert_eq!(value(" On ; c").unwrap(), "1");
        assert_eq!(value(" none").unwrap(), "");
        assert_eq!(value(" NULL").unwrap(), "");
        assert_eq!(value(r#" "yes""#).unwrap(), "yes");
        assert_eq!(value(" yesno").unwrap(), "yesno");
        assert_eq!(value(" yes-x").unwrap(), "yes-x");
        assert!(value(" yes foo").is_err());
        assert!(value(" foo yes").is_err());
    }

    #[test]
    fn syntax_php_rejects_is_rejected() {
        for bad in [
            " a=b", " \"open", " 'open", " ${FOO", " ${}", " ''", " a|b", " a~b",
        ] {
            assert!(value(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn lines_scan_into_sections_and_directives() {
        let env = Env(None);
        assert_eq!(scan_line("  ; note", &env).unwrap(), Line::Empty);
        assert_eq!(scan_line("\r", &env).unwrap(), Line::Empty);
        assert_eq!(
            scan_line("[ www ] ; c", &env).unwrap(),
            Line::Section(" www ".into())
        );
        assert_eq!(
            scan_line("LISTEN\t=\t9000\r", &env).unwrap(),
            Line::Directive {
                key: "LISTEN".into(),
                value: "9000".into()
            }
        );
        assert_eq!(
            scan_line("env[PATH] = /bin", &env).unwrap(),
            Line::Array {
                name: "env".into(),
                key: "PATH".into(),
                value: "/bin".into()
            }
        );
        assert!(scan_line("[www", &env).is_err());
        assert!(scan_line("[www]x", &env).is_err());
        assert!(scan_line("# comment", &env).is_err());
        assert!(scan_line("listen", &env).is_err());
    }
}
