//! FULLNAT (DPVS's FNAT): the pure building blocks, tested on their own; the
//! forwarding path does not use them yet.
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
//! # How the forwarding path will use them (plan)
//!
//! - Configuration: a FULLNAT service carries its LIPs, a `LaddrConfig` and a
//!   choice of none / TOA / PROXY v1 / PROXY v2. Each worker builds its own
//!   `LaddrPool` per service (control path, between bursts). The LIPs must be
//!   addresses the director answers ARP for.
//! - New connection (client SYN on the owning worker, as for NAT today): after
//!   scheduling, `allocate(now)` a `LocalAddr` (on `Exhausted`, drop the SYN and
//!   count `laddr_exhausted`). The entry records LIP:lport and, with a PROXY
//!   header, `SeqShift::new(syn.seq, proxy::header_len(..))`. The `Conn` is a
//!   full cache line already, so these 14 bytes go in a side array indexed by
//!   the same slot (`ConnId`), touched only by FULLNAT packets: NAT and DR pay
//!   nothing for it. The OUT index keys a FULLNAT entry by (proto, RIP, rport,
//!   LIP, lport), what the reply carries.
//! - Client → RS: rewrite source to LIP:lport and destination to RIP:rport (the
//!   existing NAT rewrites, once per address and port); with TOA, `insert_toa`
//!   on the SYN (or first ACK); with PROXY, emit the header into a stack buffer
//!   from (CIP:cport, VIP:vport) and `client_to_rs`, on every client segment.
//!   The room given is min(mbuf tailroom, room under the path MTU).
//! - RS → client: the reply's destination port names its worker
//!   (`owner_of_port(lport, workers)`): a NIC flow rule per port class sends it
//!   to that worker's queue, or the receiving worker passes it on through the
//!   redirect ring to the owner. Then `rs_to_client`, and the address/port
//!   rewrite back to VIP:vport → CIP:cport.
//! - Expiry: when the entry expires, `free(LocalAddr, now)` returns the port,
//!   usable again after the hold.
//!
//! # Not here yet
//!
//! The integration above (service config and ABI, the conn side array and
//! OUT key, the core's FULLNAT branch, flow rules, ICMP errors quoting
//! LIP:lport); IPv6 (TOA, PROXY TCP6); UDP FULLNAT (UOA); PROXY v2 TLVs;
//! adding and removing LIPs on a live pool; SYN proxy and sequence
//! randomisation, which would shift RS → client seq as well.

pub mod laddr;
pub mod pools;
pub mod proxy;
pub mod segment;
pub mod seq;
pub mod side;
pub mod toa;
