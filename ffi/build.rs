//! Binds the system DPDK found by pkg-config. The raw `--cflags` output is
//! passed through unchanged: DPDK's headers need its `-include rte_config.h`
//! and `-march=...`, which the pkg-config crate would drop. Linking is shared:
//! PMDs register from C constructors, so a static link would lose them.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config: {e}"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: `pkg-config {} libdpdk` failed (is libdpdk-dev >= {MIN_VERSION} installed?): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is not UTF-8")
}

/// `RTE_BIT64()` flag families are `u64` masks in C; clang's macro fallback
/// would type the small ones `u32`, which makes `a | b` across a family fail.
#[derive(Debug)]
struct Bit64Flags;

impl bindgen::callbacks::ParseCallbacks for Bit64Flags {
    fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
        let is_flag64 = [
            "RTE_ETH_RSS_",
            "RTE_ETH_RX_OFFLOAD_",
            "RTE_ETH_TX_OFFLOAD_",
            "RTE_MBUF_F_",
        ]
        .iter()
        .any(|p| name.starts_with(p));
        is_flag64.then_some(bindgen::callbacks::IntKind::U64)
    }
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    pkg_config(&[&format!("--atleast-version={MIN_VERSION}")]);
    let version = pkg_config(&["--modversion"]);
    println!("cargo:version={}", version.trim());

    let cflags: Vec<String> = pkg_config(&["--cflags"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    for lib in pkg_config(&["--libs"]).split_whitespace() {
        if let Some(name) = lib.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={name}");
        } else if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if lib.starts_with("-Wl,") {
            // `--as-needed` keeps the binary's NEEDED list short; harmless to pass on.
            println!("cargo:rustc-link-arg={lib}");
        }
    }

    let mut shim = cc::Build::new();
    shim.file("shim.c").opt_level(2).warnings(false);
    for f in &cflags {
        shim.flag(f);
    }
    shim.compile("rvs_dpdk_shim");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(Bit64Flags))
        .allowlist_function("rte_eal_.*")
        .allowlist_function(
            "rte_(lcore|get_next_lcore|get_main_lcore|socket_id|get_tsc_hz|strerror|version).*",
        )
        // Not rte_vdev_init: it lives in librte_bus_vdev, which `pkg-config --libs`
        // does not list (drivers are plugins). rte_dev_probe takes vdev strings too.
        .allowlist_function("rte_(dev_probe|dev_remove)")
        .allowlist_function("rte_(mempool_free|mempool_lookup|mempool_avail_count|mempool_in_use_count)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function(
            "rte_eth_(dev_|rx_queue_setup|tx_queue_setup|macaddr_get|promiscuous_|stats_|link_get_nowait).*",
        )
        .allowlist_function("rte_(malloc|zmalloc|free)")
        // Flow rules steering FULLNAT replies (dp::dpdk::flow): one pattern
        // ETH / IPV4 / TCP|UDP and one QUEUE action, nothing more.
        .allowlist_function("rte_flow_(validate|create|destroy|flush)")
        .allowlist_type(
            "rte_flow_(attr|item|action|error|item_type|action_type|error_type|item_eth|item_ipv4|item_tcp|item_udp|action_queue)",
        )
        .allowlist_function("rvs_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_(conf|dev_info|stats|rxconf|txconf|link)")
        .allowlist_var("RTE_(MAX_LCORE|MAX_ETHPORTS|PKTMBUF_HEADROOM|MBUF_DEFAULT_.*|ETHER_.*)")
        .allowlist_var("RTE_ETH_(RSS_|RX_OFFLOAD_|TX_OFFLOAD_|MQ_|NAME_MAX).*")
        .allowlist_var("RING_F_.*|SOCKET_ID_ANY|LCORE_ID_ANY|RTE_VER_.*|RTE_MBUF_F_.*")
        .allowlist_var("RVS_.*")
        .clang_macro_fallback()
        .blocklist_type("max_align_t")
        .no_debug("rte_flow_item_gtp_psc")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_eth_dev_data|rte_eth_dev")
        .layout_tests(false)
        .derive_default(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        .generate()
        .expect("dpdk-sys: bindgen failed")
        .write_to_file(out.join("bindings.rs"))
        .expect("dpdk-sys: cannot write bindings");
}
