//! keepalived.conf's words, line by line: what keepalived's own reader does
//! before it looks at a keyword.
//!
//! - `#` and `!` start a comment anywhere outside a quoted string, up to the
//!   end of the line (keepalived.conf(5)).
//! - `"..."` is one word (the quotes removed, nothing inside interpreted), so
//!   `misc_path "/bin/check arg1 arg2"` keeps its blanks.
//! - `{` and `}` are words of their own even when glued to another word, so
//!   `url { path / }` reads as keepalived reads it.
//! - A line whose first word is `include` (or a variant) is not split: its
//!   pattern may hold brace expressions (`{a,b}`), which are not blocks.
//! - keepalived's conditional lines: `@ID rest` is read only when ID is the
//!   configuration id, `@^ID rest` only when it is not (keepalived without
//!   `-i` uses the host name up to its first dot, and so does rvs-cp).

use std::sync::Arc;

use super::diag::{KeepalivedError, Loc};

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Written in quotes: never a brace nor a keyword-like `{`.
    pub quoted: bool,
    pub loc: Loc,
}

impl Word {
    /// True for an unquoted `{` or `}`.
    pub fn is_brace(&self, brace: char) -> bool {
        !self.quoted && self.text.len() == 1 && self.text.starts_with(brace)
    }
}

/// One meaningful line of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Words(Vec<Word>),
    /// `include PATTERN` (and keepalived's variants includer, includem, ...).
    Include {
        pattern: String,
        loc: Loc,
    },
}

const INCLUDE_WORDS: &[&str] = &[
    "include", "includer", "includem", "includew", "includeb", "includea",
];

/// Splits `text` (the contents of `file`) into lines of words.
pub fn lex(text: &str, file: &Arc<str>, config_id: &str) -> Result<Vec<Line>, KeepalivedError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: i + 1,
        };
        let Some(body) = conditional(raw, config_id) else {
            continue;
        };
        let head = body.split_whitespace().next().unwrap_or("");
        if INCLUDE_WORDS.contains(&head) {
            let rest = strip_comment(body.trim_start()[head.len()..].trim());
            let pattern = rest.trim().trim_matches('"').to_string();
            if pattern.is_empty() {
                return Err(KeepalivedError {
                    loc,
                    msg: format!("'{head}' needs a file name or pattern"),
                });
            }
            out.push(Line::Include { pattern, loc });
            continue;
        }
        let words = split(body, &loc)?;
        if !words.is_empty() {
            out.push(Line::Words(words));
        }
    }
    Ok(out)
}

/// The line without its `@ID` prefix if it applies here; None if it does not.
fn conditional<'a>(raw: &'a str, config_id: &str) -> Option<&'a str> {
    let t = raw.trim_start();
    let Some(rest) = t.strip_prefix('@') else {
        return Some(raw);
    };
    let (negate, rest) = match rest.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (id, body) = rest.split_at(end);
    ((id == config_id) != negate).then_some(body)
}

/// The text before a comment that is not inside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' | '!' if !quoted => return &s[..i],
            _ => {}
        }
    }
    s
}

fn split(body: &str, loc: &Loc) -> Result<Vec<Word>, KeepalivedError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars();
    let word = |text: String, quoted: bool| Word {
        text,
        quoted,
        loc: loc.clone(),
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '"' => {
                if !cur.is_empty() {
                    words.push(word(std::mem::take(&mut cur), false));
                }
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => {
                            return Err(KeepalivedError {
                                loc: loc.clone(),
                                msg: "a quoted string is not closed on its line".into(),
                            })
                        }
                    }
                }
                words.push(word(s, true));
            }
            '{' | '}' => {
                if !cur.is_empty() {
                    words.push(word(std::mem::take(&mut cur), false));
                }
                words.push(word(c.to_string(), false));
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(word(std::mem::take(&mut cur), false));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(word(cur, false));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &Line) -> Vec<(&str, bool)> {
        match line {
            Line::Words(w) => w.iter().map(|w| (w.text.as_str(), w.quoted)).collect(),
            Line::Include { .. } => panic!("include"),
        }
    }

    fn lx(text: &str) -> Vec<Line> {
        lex(text, &Arc::from("k.conf"), "lb1").unwrap()
    }

    #[test]
    fn comments_quotes_and_braces() {
        let l = lx("! head\n\n  # only a comment\nvirtual_server 10.0.0.1 80{ # web\n  misc_path \"/bin/x a#b\" ! c\nurl {path /}\n");
        assert_eq!(l.len(), 3);
        assert_eq!(
            texts(&l[0]),
            [
                ("virtual_server", false),
                ("10.0.0.1", false),
                ("80", false),
                ("{", false)
            ]
        );
        assert_eq!(texts(&l[1]), [("misc_path", false), ("/bin/x a#b", true)]);
        assert_eq!(
            texts(&l[2]),
            [
                ("url", false),
                ("{", false),
                ("path", false),
                ("/", false),
                ("}", false)
            ]
        );
        let Line::Words(w) = &l[1] else { panic!() };
        assert_eq!(w[0].loc.to_string(), "k.conf:5");
        assert!(!w[1].is_brace('{'));
    }

    #[test]
    fn an_open_quote_is_an_error_with_its_line() {
        let e = lex("a\nmisc_path \"/bin/x\n", &Arc::from("k.conf"), "x").unwrap_err();
        assert_eq!(e.loc.line, 2);
        assert!(e.msg.contains("quoted string"), "{}", e.msg);
    }

    #[test]
    fn include_lines_keep_their_pattern_whole() {
        let l = lx("include conf.d/{a,b}*.conf # x\nincluder \"/etc/k/*.conf\"\n");
        assert_eq!(
            l[0],
            Line::Include {
                pattern: "conf.d/{a,b}*.conf".into(),
                loc: Loc {
                    file: Arc::from("k.conf"),
                    line: 1
                }
            }
        );
        assert!(matches!(&l[1], Line::Include { pattern, .. } if pattern == "/etc/k/*.conf"));
        assert!(lex("include\n", &Arc::from("k"), "x").is_err());
    }

    #[test]
    fn conditional_lines_follow_the_config_id() {
        let l = lx("@lb1 a 1\n@lb2 b 2\n@^lb2 c 3\n@^lb1 d 4\n");
        let heads: Vec<&str> = l.iter().map(|l| texts(l)[0].0).collect();
        assert_eq!(heads, ["a", "c"]);
    }
}
