//! rvsadm run in process over a `CtlTransport`, for the golden-file tests
//! (`adm_golden.rs`, `adm_fullnat.rs`): its exit code and output, the golden
//! files, and the small constructors their fixtures use.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use rvs_cp::adm::{run, CtlTransport};
use rvs_proto::types::{Proto, ServiceKey};

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn rvsadm_in(t: &mut dyn CtlTransport, line: &str, stdin: &str) -> Out {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = run(&args, t, &mut stdin.as_bytes(), &mut o, &mut e);
    Out {
        code,
        stdout: String::from_utf8(o).unwrap(),
        stderr: String::from_utf8(e).unwrap(),
    }
}

pub fn rvsadm(t: &mut dyn CtlTransport, line: &str) -> Out {
    rvsadm_in(t, line, "")
}

/// The output of a command that must succeed, with nothing on stderr.
pub fn ok(t: &mut dyn CtlTransport, line: &str) -> String {
    let o = rvsadm(t, line);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "rvsadm {line}");
    o.stdout
}

pub fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn key(proto: Proto, vip: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto,
        vip: ip(vip),
        port,
    }
}
