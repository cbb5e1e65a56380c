//! keepalived.conf's block structure: statements (`keyword args...`), some
//! with a `{ ... }` block of statements.
//!
//! A statement ends at the end of its line, at `{` (its block opens) or at
//! `}` (the enclosing block closes). keepalived also accepts a block's `{`
//! on the line after its keyword; so does this parser, when the `{` begins
//! the line and the statement before it has no block yet.

use super::diag::{KeepalivedError, Loc};
use super::lexer::{Line, Word};

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub keyword: Word,
    pub args: Vec<Word>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn loc(&self) -> &Loc {
        &self.keyword.loc
    }

    pub fn name(&self) -> &str {
        &self.keyword.text
    }
}

struct Open {
    stmts: Vec<Stmt>,
    /// The statement whose block this is (None at the top).
    owner: Option<Stmt>,
}

/// Builds the statement tree of the lines of a file (includes already in).
pub fn parse(lines: Vec<Line>) -> Result<Vec<Stmt>, KeepalivedError> {
    let mut stack = vec![Open {
        stmts: Vec::new(),
        owner: None,
    }];
    for line in lines {
        let Line::Words(words) = line else {
            // include::read_all replaced every include; nothing else makes one.
            continue;
        };
        let mut cur: Vec<Word> = Vec::new();
        for (i, w) in words.into_iter().enumerate() {
            if w.is_brace('{') {
                let owner = if cur.is_empty() {
                    let top = stack.last_mut().map(|o| &mut o.stmts);
                    match top.and_then(|s| s.pop()) {
                        Some(s) if i == 0 && s.block.is_none() => s,
                        _ => {
                            return Err(KeepalivedError {
                                loc: w.loc,
                                msg: "'{' without a keyword before it".into(),
                            })
                        }
                    }
                } else {
                    stmt(std::mem::take(&mut cur))
                };
                stack.push(Open {
                    stmts: Vec::new(),
                    owner: Some(owner),
                });
            } else if w.is_brace('}') {
                if !cur.is_empty() {
                    push(&mut stack, stmt(std::mem::take(&mut cur)));
                }
                if stack.len() < 2 {
                    return Err(KeepalivedError {
                        loc: w.loc,
                        msg: "'}' without an open block".into(),
                    });
                }
                if let Some(Open {
                    stmts,
                    owner: Some(mut s),
                }) = stack.pop()
                {
                    s.block = Some(stmts);
                    push(&mut stack, s);
                }
            } else {
                cur.push(w);
            }
        }
        if !cur.is_empty() {
            push(&mut stack, stmt(cur));
        }
    }
    if stack.len() > 1 {
        let owner = stack.last().and_then(|o| o.owner.as_ref());
        let (loc, name) = owner
            .map(|s| (s.loc().clone(), s.name().to_string()))
            .unwrap_or_default();
        return Err(KeepalivedError {
            loc,
            msg: format!("block '{name}' is not closed: a '}}' is missing"),
        });
    }
    Ok(stack.pop().map(|o| o.stmts).unwrap_or_default())
}

fn stmt(mut words: Vec<Word>) -> Stmt {
    let keyword = words.remove(0);
    Stmt {
        keyword,
        args: words,
        block: None,
    }
}

fn push(stack: &mut [Open], s: Stmt) {
    if let Some(top) = stack.last_mut() {
        top.stmts.push(s);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::lexer::lex;
    use super::*;

    fn p(text: &str) -> Result<Vec<Stmt>, KeepalivedError> {
        parse(lex(text, &Arc::from("k.conf"), "x").unwrap())
    }

    #[test]
    fn nested_blocks_and_one_line_blocks() {
        let t = p("virtual_server 10.0.0.1 80 {\n delay_loop 6\n real_server 10.0.0.2 80 {\n  HTTP_GET { url { path /x } }\n }\n}\nglobal_defs\n{\n router_id a\n}\n").unwrap();
        assert_eq!(t.len(), 2);
        let vs = &t[0];
        assert_eq!(vs.name(), "virtual_server");
        assert_eq!(vs.args.len(), 2);
        let body = vs.block.as_ref().unwrap();
        assert_eq!(body[0].name(), "delay_loop");
        let rs = &body[1];
        assert_eq!(rs.loc().line, 3);
        let http = &rs.block.as_ref().unwrap()[0];
        let url = &http.block.as_ref().unwrap()[0];
        assert_eq!(url.name(), "url");
        let path = &url.block.as_ref().unwrap()[0];
        assert_eq!((path.name(), path.args[0].text.as_str()), ("path", "/x"));
        assert_eq!(t[1].name(), "global_defs", "'{{' on the next line");
        assert_eq!(t[1].block.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn brace_errors_name_their_line() {
        let e = p("virtual_server 10.0.0.1 80 {\n  delay_loop 6\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:1: block 'virtual_server' is not closed: a '}' is missing"
        );
        let e = p("a {\n}\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "k.conf:3: '}' without an open block");
        let e = p("{\n").unwrap_err();
        assert_eq!(e.loc.line, 1);
        let e = p("a { }\n{\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "k.conf:2: '{' without a keyword before it");
    }
}
