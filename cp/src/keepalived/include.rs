//! keepalived's `include`: the lines of a file with every include replaced,
//! in place, by the lines of the files it names.
//!
//! A relative pattern is taken from the directory of the file that holds the
//! `include` (keepalived.conf(5): "relative to the directory of the including
//! file itself"). Patterns are glob(3) patterns (`*`, `?`, `[...]`) with csh
//! brace expressions (`{a,b}`); matches are read in sorted order, as glob(3)
//! returns them.
//!
//! keepalived's plain `include` says nothing when a file cannot be opened.
//! rvs-cp is stricter, because a silently missing file means silently missing
//! services: a pattern without wildcards must name a readable file; a
//! wildcard pattern that matches nothing is a warning (an empty `conf.d/` is
//! a normal state).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{KeepalivedError, Loc, Warning};
use super::lexer::{lex, Line};

/// Deeper nesting than this is taken for a loop keepalived would also refuse.
const MAX_DEPTH: usize = 32;
/// Brace expressions may multiply; past this many patterns the line is refused.
const MAX_BRACE_PATTERNS: usize = 1024;

/// Reads `path` and everything it includes.
pub fn read_all(
    path: &Path,
    config_id: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Line>, KeepalivedError> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    read_into(path, None, config_id, &mut stack, &mut out, warnings)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    from: Option<&Loc>,
    config_id: &str,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<Line>,
    warnings: &mut Vec<Warning>,
) -> Result<(), KeepalivedError> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let at = |msg: String| KeepalivedError {
        loc: from.cloned().unwrap_or(Loc {
            file: name.clone(),
            line: 0,
        }),
        msg,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canon) {
        return Err(at(format!("{} includes itself (include loop)", path.display())));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(at(format!("includes nested more than {MAX_DEPTH} deep")));
    }
    stack.push(canon);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for line in lex(&text, &name, config_id)? {
        match line {
            Line::Include { pattern, loc } => {
                let files = expand(&pattern, &dir).map_err(|msg| KeepalivedError {
                    loc: loc.clone(),
                    msg,
                })?;
                if files.is_empty() {
                    if has_wildcard(&pattern) {
                        warnings.push(Warning {
                            loc: loc.clone(),
                            msg: format!("include {pattern}: no file matches"),
                        });
                    } else {
                        return Err(KeepalivedError {
                            loc,
                            msg: format!("include {pattern}: no such file"),
                        });
                    }
                }
                for f in files {
                    read_into(&f, Some(&loc), config_id, stack, out, warnings)?;
                }
            }
            words => out.push(words),
        }
    }
    stack.pop();
    Ok(())
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// The files `pattern` names, relative ones from `dir`, sorted per brace
/// alternative (glob(3) with GLOB_BRACE sorts each alternative's matches).
fn expand(pattern: &str, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in braces(pattern)? {
        let full = if Path::new(&p).is_absolute() {
            PathBuf::from(&p)
        } else {
            dir.join(&p)
        };
        if !has_wildcard(&p) {
            if full.exists() {
                files.push(full);
            }
            continue;
        }
        let text = full
            .to_str()
            .ok_or_else(|| format!("include {pattern}: the path is not UTF-8"))?;
        let mut found: Vec<PathBuf> = glob::glob(text)
            .map_err(|e| format!("include {pattern}: bad pattern: {e}"))?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// csh brace expansion: `a{b,c}d` is `abd`, `acd`; nested braces work; a
/// brace without a comma inside stays as written (as in glob(3)).
fn braces(p: &str) -> Result<Vec<String>, String> {
    let Some((open, close)) = first_group(p) else {
        return Ok(vec![p.to_string()]);
    };
    let inner = &p[open + 1..close];
    let alts = split_top(inner);
    if alts.len() < 2 {
        // `{x}`: not an alternative; keep it and expand what follows.
        let rest = braces(&p[close + 1..])?;
        return Ok(rest.into_iter().map(|r| format!("{}{r}", &p[..=close])).collect());
    }
    let mut out = Vec::new();
    for a in alts {
        for e in braces(&format!("{}{a}{}", &p[..open], &p[close + 1..]))? {
            out.push(e);
            if out.len() > MAX_BRACE_PATTERNS {
                return Err(format!(
                    "include {p}: more than {MAX_BRACE_PATTERNS} brace alternatives"
                ));
            }
        }
    }
    Ok(out)
}

/// The first `{` and its matching `}`.
fn first_group(p: &str) -> Option<(usize, usize)> {
    let open = p.find('{')?;
    let mut depth = 0usize;
    for (i, c) in p[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((open, open + i));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on the commas that are not inside nested braces.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_expressions_expand_like_csh() {
        assert_eq!(braces("a{b,c}d").unwrap(), ["abd", "acd"]);
        assert_eq!(
            braces("{x,y{1,2}}.conf").unwrap(),
            ["x.conf", "y1.conf", "y2.conf"]
        );
        assert_eq!(braces("plain").unwrap(), ["plain"]);
        assert_eq!(braces("a{b}c{d,e}").unwrap(), ["a{b}cd", "a{b}ce"]);
        assert_eq!(
            braces("a{b,c").unwrap(),
            ["a{b,c"],
            "an unclosed brace is literal"
        );
        assert!(braces(&"{a,b}".repeat(11)).is_err());
    }
}
