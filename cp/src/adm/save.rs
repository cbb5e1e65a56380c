//! Reading what `ipvsadm -S` writes (and what `ipvsadm -R` reads): one
//! ipvsadm command line per line, words split on blanks.
//!
//! As ipvsadm's config_stream, a leading `ipvsadm` word is skipped and blank
//! lines are ignored; a word starting with `#` comments out the rest of the
//! line. Unlike ipvsadm, which runs each line as it reads it and stops half
//! way on an error, the whole file becomes one `Command::Restore`, which the
//! data plane applies all or nothing.

use rvs_proto::command::Command;

use super::parse::{parse_args, Action, ParseError};

/// A save file turned into one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreScript {
    /// `Command::Restore` of every line's command.
    pub command: Command,
    /// The 1-based line each command came from, by index.
    pub lines: Vec<usize>,
}

/// A line that is not a configuration command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    pub line: usize,
    pub error: ParseError,
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.error.msg)
    }
}

/// Parses a save file into one `Command::Restore`.
pub fn parse_restore(text: &str) -> Result<RestoreScript, RestoreError> {
    let mut cmds = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut words: Vec<String> = raw
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .map(String::from)
            .collect();
        if words.first().is_some_and(|w| w == "ipvsadm" || w == "rvsadm") {
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        match parse_args(&words) {
            Ok(Action::Apply(cmd)) => {
                cmds.push(cmd);
                lines.push(line);
            }
            Ok(other) => {
                let what = match other {
                    Action::List(..) => "-L",
                    Action::Save { .. } => "-S",
                    Action::Restore => "-R",
                    Action::Help => "-h",
                    Action::Version => "-v",
                    Action::Apply(_) => "this command",
                };
                return Err(RestoreError {
                    line,
                    error: ParseError {
                        msg: format!("{what} cannot be restored: only commands that change the table can"),
                        code: 2,
                    },
                });
            }
            Err(error) => return Err(RestoreError { line, error }),
        }
    }
    Ok(RestoreScript {
        command: Command::Restore(cmds),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_proto::types::{Proto, ServiceKey};

    #[test]
    fn comments_blank_lines_and_the_program_name() {
        let text = "# saved by ipvsadm\n\n   \nipvsadm -A -t 10.0.0.1:80 -s rr   # web\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1\n";
        let s = parse_restore(text).unwrap();
        let Command::Restore(cmds) = &s.command else {
            panic!()
        };
        assert_eq!(cmds.len(), 2);
        assert_eq!(s.lines, [4, 5]);
        assert!(matches!(&cmds[0], Command::AddService(sp) if sp.scheduler == "rr"));
    }

    #[test]
    fn any_change_command_may_appear() {
        let text =
            "-C\n--set 900 120 300\n-A -t 10.0.0.1:80\n-E -t 10.0.0.1:80 -s rr\n-Z\n-D -t 10.0.0.1:80\n";
        let s = parse_restore(text).unwrap();
        let Command::Restore(cmds) = &s.command else {
            panic!()
        };
        assert_eq!(cmds.len(), 6);
        assert_eq!(
            cmds[5],
            Command::DelService(ServiceKey {
                proto: Proto::Tcp,
                vip: "10.0.0.1".parse().unwrap(),
                port: 80
            })
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_restore("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w 99999\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.to_string(), "line 2: illegal weight specified");
        assert_eq!(e.error.code, 2);
        let e = parse_restore("-A -t 10.0.0.1:80\n\n-L -n\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.error.msg.contains("cannot be restored"));
        assert_eq!(parse_restore("-R\n").unwrap_err().line, 1);
    }

    #[test]
    fn an_empty_file_is_an_empty_transaction() {
        let s = parse_restore("").unwrap();
        assert_eq!(s.command, Command::Restore(vec![]));
    }
}
