//! FULLNAT (DPVS's FNAT): the pure building blocks, tested on their own, and
//! the per-worker state the forwarding path keeps with them
//! (`core::fnat` is the per-packet side).
//!
//! # What FULLNAT is
//!
//! LVS-NAT rewrites only the destination (VIP:vport → RIP:rport), so the real
//! server must route its replies back through the director. FULLNAT also
//! rewrites the source: the client's CIP:cport → VIP:vport leaves the director
//! as LIP:lport → RIP:rport, where LIP is one of the service's *local
//! addresses*. The RS replies to LIP:lport, which routes to the director from
//! anywhere, so real servers need no special route and may sit in other
//! subnets. The reply RIP:rport → LIP:lport is rewritten back to VIP:vport →
//! CIP:cport. The price is that the RS no longer sees the client's address;
//! TOA or a PROXY header gives it back.
//!
//! # The parts
//!
//! - [`laddr`]: each worker's share of every LIP's ports. [`laddr::owner_of_port`]
//!   names the worker that owns a local port (the low 6 bits, modulo the worker
//!   count), and [`laddr::LaddrPool`] leases ports from that worker's share
//!   only, round-robin over the LIPs, O(1) per LIP, with a hold (TIME_WAIT) on
//!   freed ports and [`laddr::LaddrError::Exhausted`] when none is ready.
//! - [`proxy`]: PROXY protocol v1 and v2 headers for TCP over IPv4, written into
//!   a caller's buffer, with their length known in advance.
//! - [`toa`]: the TOA option (kind 254: client port and address) inserted in
//!   front of a TCP header's options, lengths and checksums fixed incrementally.
//! - [`seq`]: [`seq::SeqShift`], 8 bytes of per-connection state, and the
//!   in-place rewrites that insert a header at the start of the client's stream
//!   and translate seq, ack and SACK both ways from then on.
//! - [`segment`]: the shared check that a packet is an unfragmented IPv4/TCP
//!   packet, and the error type of the rewrites that change its length.
//!
//! None of the per-packet functions allocates or can panic on any input; each
//! refuses with a named error and leaves the packet as it was.
//!
//! - [`side`]: a connection's FULLNAT state (LIP:lport, the client hint),
//!   in a side array of the connection table.
//! - [`pools`]: a worker's pools, one per FULLNAT service, kept across
//!   service snapshots, and the per-LIP counters `ipvsadm -G` reads.
//! - [`steer`]: NIC flow rules delivering replies to their owner, per port
//!   (classes, exact, none), planned and diffed in pure code against a
//!   `FlowDevice` (`dpdk::flow` binds it to rte_flow).
//!
//! # How the forwarding path uses them
//!
//! - Configuration: a FULLNAT service carries its LIPs (each resolved to a
//!   port by name and checked to be on its subnet by the control thread,
//!   `LaddrNotOnPort` otherwise) and its client address mode (none / TOA /
//!   PROXY v1 / PROXY v2). Each worker rebuilds its `LaddrPool`s when it
//!   switches snapshots (between bursts), LIPs keeping their leases
//!   wherever they move (`LaddrPool::regroup`). A LIP removed while
//!   connections use it stays owned, never allocated from, until a later
//!   configuration change finds it unused.
//! - New connection (client SYN on the owning worker, as for NAT): after
//!   scheduling, `allocate(now)` a `LocalAddr` (on `Exhausted`, drop the SYN
//!   and count `laddr_exhausted`). The entry records LIP:lport and, with a
//!   PROXY header, `SeqShift::new(syn.seq, proxy::header_len(..))`, in the
//!   connection table's side array (`side`): the `Conn` is a full cache
//!   line, NAT and DR pay nothing for it. The OUT index keys a FULLNAT entry
//!   by (proto, RIP, rport, LIP, lport), what the reply carries.
//! - Client → RS: source LIP:lport, destination RIP:rport; with TOA,
//!   `insert_toa` on the SYN and the segments acknowledging the RS's first
//!   byte; with PROXY, the header emitted into a stack buffer from
//!   (CIP:cport, VIP:vport) and `client_to_rs`, on every client segment. The
//!   room given is min(buffer tailroom, room under the egress MTU).
//! - RS → client, with TOA: the server's SYN-ACK announces an MSS 8 bytes
//!   smaller (`wire::tcpopt::lower_mss`), so that full-sized client segments
//!   still have room for TOA under the MTU.
//! - RS → client: the reply's destination port names its worker
//!   (`owner_of_port(lport, workers)`). Where the NIC takes them, rte_flow
//!   rules put it on the owner's queue ([`steer`]: port classes under a
//!   mask, or exact ports, installed by the control thread when a port's
//!   LIPs change); a reply that still lands elsewhere is passed on through
//!   the redirect ring to the owner. The owner counts it `steered`,
//!   `direct` or `redirected`. Then `rs_to_client`, and the address/port
//!   rewrite back to VIP:vport → CIP:cport.
//! - Expiry: when the entry is freed, the table queues its `LocalAddr`; the
//!   worker `free`s it to its pool, usable again after the hold.
//! - Sync: the IPVS sync v1 format has no LIP, so FULLNAT connections are
//!   not sent (`sync::threshold`); a received FULLNAT entry is refused by
//!   the decoder (`UnsupportedForward`).
//!
//! # Not here yet
//!
//! Flow steering proven on a NIC that takes the rules (this lab's net_tap
//! cannot: its kernel lacks TC flower, skbedit and multiq, so every port
//! ends in `steer::Mode::None`); IPv6 (TOA, PROXY TCP6); UDP client address (UOA);
//! PROXY v2 TLVs; SYN proxy with FULLNAT (refused by the model) and
//! sequence randomisation, which would shift RS → client seq as well.

pub mod laddr;
pub mod pools;
pub mod proxy;
pub mod segment;
pub mod seq;
pub mod side;
pub mod stats;
pub mod steer;
pub mod toa;
