//! /metrics under hostile local clients: 20 idle connections and one client
//! dribbling its request a byte every 1.5 s must not delay a normal scrape,
//! and the dribbler is cut off by the header read timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_cp::metrics::{MetricsServer, MetricsState, HEADER_READ_TIMEOUT};

/// A scrape, bounded: (status line and headers, body, how long it took).
fn scrape(addr: SocketAddr) -> (String, String, Duration) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string(), t0.elapsed())
}

/// Whether the server closed `s` (EOF or reset) before `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(t0.elapsed()),
        }
    }
}

#[test]
fn idle_and_dribbling_clients_do_not_delay_a_scrape() {
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(MetricsState::default())).unwrap();
    let addr = server.local_addr();

    let mut idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();

    // The dribbler: one byte of a valid request every 1.5 s; it would finish
    // after ~50 s. Returns whether it ever got a reply, and when it was cut off.
    let dribbler = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        let req = b"GET /metrics HTTP/1.1\r\nHost: slow.example\r\n\r\n";
        for b in req {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            if closed_within(&mut s, Duration::from_millis(1500)).is_some() {
                return (false, t0.elapsed());
            }
            if t0.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let _ = s.read_to_end(&mut rest);
        (!rest.is_empty(), t0.elapsed())
    });

    // Scrapes while the idle connections are open and the dribbler dribbles.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..4 {
        let (head, body, took) = scrape(addr);
        assert!(head.starts_with("HTTP/1.1 200"), "scrape {i}: {head:?}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"), "{body:?}");
        assert!(took < Duration::from_secs(1), "scrape {i} took {took:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (got_reply, cut_after) = dribbler.join().unwrap();
    assert!(!got_reply, "the dribbler was served");
    assert!(
        cut_after < HEADER_READ_TIMEOUT + Duration::from_millis(1600),
        "the dribbler was cut off only after {cut_after:?}"
    );

    // The idle connections are cut off by the same timeout (counted from accept).
    for s in &mut idle {
        assert!(
            closed_within(s, HEADER_READ_TIMEOUT + Duration::from_secs(1)).is_some(),
            "an idle connection is still open"
        );
    }
    // And the endpoint still answers, a 404 included.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 404"), "{out:?}");
    drop(server);
}
