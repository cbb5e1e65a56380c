//! Writes a pcap of client → VIP traffic for the macro-benchmarks.
//!
//!     rvs-pcapgen --out F.pcap [--flows N] [--packets M] [--proto udp|tcp|syn]
//!                 [--size 64|IMIX|BYTES] [--dst-mac MAC] [--vip A] [--vport P]
//!                 [--client-base A] [--owner K/W] [--flood-syns S] [--flood-vport P]

use std::fs::File;
use std::io::BufWriter;
use std::process::exit;

use rvs_macro::gen::{generate, parse_mac, Kind, Size, Spec};

fn fail(msg: &str) -> ! {
    eprintln!("rvs-pcapgen: {msg}");
    exit(2)
}

fn main() {
    let mut spec = Spec::default();
    let mut out = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        let num = |v: String| {
            v.parse::<u32>()
                .unwrap_or_else(|_| fail(&format!("{a}: not a number: {v}")))
        };
        match a.as_str() {
            "--out" => out = Some(val()),
            "--flows" => spec.flows = num(val()),
            "--packets" => spec.packets = num(val()),
            "--proto" => {
                spec.kind = match val().as_str() {
                    "udp" => Kind::Udp,
                    "tcp" => Kind::Tcp,
                    "syn" => Kind::Syn,
                    v => fail(&format!("--proto: udp, tcp or syn, not {v}")),
                }
            }
            "--size" => {
                let v = val();
                spec.size = if v.eq_ignore_ascii_case("imix") {
                    Size::Imix
                } else {
                    match v.parse::<usize>() {
                        Ok(n) if (64..=1518).contains(&n) => Size::Fixed(n),
                        _ => fail("--size: IMIX or 64..1518"),
                    }
                }
            }
            "--dst-mac" => spec.dst_mac = parse_mac(&val()).unwrap_or_else(|| fail("--dst-mac: bad MAC")),
            "--src-mac" => spec.src_mac = parse_mac(&val()).unwrap_or_else(|| fail("--src-mac: bad MAC")),
            "--vip" => spec.vip = val().parse().unwrap_or_else(|_| fail("--vip: bad address")),
            "--vport" => spec.vport = num(val()) as u16,
            "--client-base" => {
                spec.client_base = val()
                    .parse()
                    .unwrap_or_else(|_| fail("--client-base: bad address"))
            }
            "--owner" => {
                let v = val();
                let (k, w) = v.split_once('/').unwrap_or_else(|| fail("--owner: K/W"));
                let (k, w) = (num(k.into()) as u16, num(w.into()) as u16);
                if w == 0 || k >= w {
                    fail("--owner: need K < W");
                }
                spec.owner = Some((k, w));
            }
            "--flood-syns" => spec.flood_syns = num(val()),
            "--flood-vport" => spec.flood_vport = num(val()) as u16,
            "-h" | "--help" => {
                eprintln!("see the doc comment of benches/macro/src/bin/rvs-pcapgen.rs");
                exit(0)
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let out = out.unwrap_or_else(|| fail("--out FILE is needed"));
    let f = File::create(&out).unwrap_or_else(|e| fail(&format!("{out}: {e}")));
    let s = generate(&spec, BufWriter::with_capacity(1 << 20, f))
        .unwrap_or_else(|e| fail(&format!("{out}: {e}")));
    println!(
        "{out}: {} frames, average {:.1} B on the wire",
        s.frames, s.avg_wire_len
    );
}
