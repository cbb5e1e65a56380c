//! HTTP_GET: `GET path HTTP/1.0`; healthy when the status is in status_code
//! (default 200) and, if given, the body's MD5 equals `digest` (as keepalived's
//! genhash prints it) and the body matches `regex`. The whole exchange must
//! finish within connect_timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::Outcome;

/// Responses larger than this are cut (a health page is small).
const MAX_RESPONSE: usize = 4 << 20;

pub struct HttpCheck {
    pub path: String,
    pub status_codes: Vec<u16>,
    pub digest: Option<String>,
    pub regex: Option<regex::Regex>,
}

/// Lowercase hex MD5 of `body`.
pub fn md5_hex(body: &[u8]) -> String {
    Md5::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

fn exchange(target: SocketAddrV4, path: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let end = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(target), timeout)
        .map_err(|e| format!("connect to {target}: {e}"))?;
    let left = |end: Instant| {
        end.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left(end))).map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: rvs-cp\r\nConnection: close\r\n\r\n",
        target
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() >= end {
            return Err(format!("no complete answer within {timeout:?}"));
        }
        s.set_read_timeout(Some(left(end))).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE {
                    return Ok(buf);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// Status code and body of a raw HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> Result<(u16, &[u8]), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len());
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let line = String::from_utf8_lossy(&raw[..line_end]);
    let mut parts = line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/") {
        return Err("answer is not HTTP".into());
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "answer has no status code".to_string())?;
    Ok((status, &raw[head_end..]))
}

impl HttpCheck {
    pub fn check(&self, target: SocketAddrV4, timeout: Duration) -> Outcome {
        let raw = match exchange(target, &self.path, timeout) {
            Ok(r) => r,
            Err(e) => return Outcome::down(format!("HTTP_GET {e}")),
        };
        self.judge(&raw)
    }

    /// The verdict on one raw response.
    pub fn judge(&self, raw: &[u8]) -> Outcome {
        let (status, body) = match parse_response(raw) {
            Ok(x) => x,
            Err(e) => return Outcome::down(format!("HTTP_GET {e}")),
        };
        if !self.status_codes.contains(&status) {
            return Outcome::down(format!("HTTP_GET status {status}"));
        }
        if let Some(want) = &self.digest {
            let got = md5_hex(body);
            if &got != want {
                return Outcome::down(format!("HTTP_GET digest {got} is not {want}"));
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(&String::from_utf8_lossy(body)) {
                return Outcome::down(format!("HTTP_GET body does not match regex '{}'", re.as_str()));
            }
        }
        Outcome::up(format!("HTTP_GET status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(digest: Option<&str>, regex: Option<&str>) -> HttpCheck {
        HttpCheck {
            path: "/".into(),
            status_codes: vec![200, 204],
            digest: digest.map(String::from),
            regex: regex.map(|r| regex::Regex::new(r).unwrap()),
        }
    }

    #[test]
    fn md5_is_genhash_hex() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"hello\n"), "b1946ac92492d2347c6235b4d2611184");
    }

    #[test]
    fn verdicts() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
        assert!(hc(None, None).judge(ok).ok);
        assert!(
            hc(Some("b1946ac92492d2347c6235b4d2611184"), Some("^hel+o"))
                .judge(ok)
                .ok
        );
        let o = hc(Some("d41d8cd98f00b204e9800998ecf8427e"), None).judge(ok);
        assert!(!o.ok && o.detail.contains("digest"), "{o:?}");
        let o = hc(None, Some("world")).judge(ok);
        assert!(!o.ok && o.detail.contains("regex"), "{o:?}");
        let o = hc(None, None).judge(b"HTTP/1.0 503 Service Unavailable\r\n\r\n");
        assert_eq!(o.detail, "HTTP_GET status 503");
        assert!(hc(None, None).judge(b"HTTP/1.0 204 No Content\r\n\r\n").ok);
        assert!(!hc(None, None).judge(b"SSH-2.0-OpenSSH\r\n").ok);
        assert!(!hc(None, None).judge(b"").ok);
    }
}
