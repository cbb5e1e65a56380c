//! What reading a keepalived.conf reports: errors and warnings, each with
//! the file and line it is about, printed `FILE:LINE: ...` like a compiler
//! (keepalived itself prints `(FILE: Line N) ...`).

use std::fmt;
use std::sync::Arc;

/// Where a word is: the file (as the command line or the including file
/// named it) and its 1-based line (0: the file as a whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// A reason to refuse the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepalivedError {
    pub loc: Loc,
    pub msg: String,
}

impl KeepalivedError {
    pub fn at(loc: &Loc, msg: impl Into<String>) -> KeepalivedError {
        KeepalivedError {
            loc: loc.clone(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for KeepalivedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

impl std::error::Error for KeepalivedError {}

/// Something read but not used (an unknown keyword, a notify script).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.loc, self.msg)
    }
}
