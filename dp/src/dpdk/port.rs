use std::ffi::{c_uint, CStr, CString};
use std::marker::PhantomData;

use dpdk_sys as sys;

use super::{DpdkError, MbufBurst, Mempool};

/// An ethdev port. A plain id: copying it is free; the device itself lives
/// until EAL cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    id: u16,
}

/// How [`Port::configure`] sets a port up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthdevConf {
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Descriptors per queue; the driver may round them (see the result).
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// None keeps the device default (1500).
    pub mtu: Option<u16>,
    /// Spread flows over the RX queues by an IP/TCP/UDP hash, when the device
    /// supports it and there is more than one RX queue.
    pub rss: bool,
}

impl Default for EthdevConf {
    fn default() -> Self {
        EthdevConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: true,
        }
    }
}

/// What [`Port::configure`] ended up with.
#[derive(Debug)]
pub struct Configured {
    /// One handle per RX queue, in queue order, to hand to the worker lcores.
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    /// The RSS hash types enabled (0: no RSS, everything lands on queue 0).
    pub rss_hf: u64,
    pub rx_desc: u16,
    pub tx_desc: u16,
}

/// Counters from `rte_eth_stats_get`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC because RX rings were full: workers too slow.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX failed for lack of mbufs: mempool too small or mbufs leaked.
    pub rx_nombuf: u64,
}

/// Makes "01:00.0" into DPDK's ethdev name "0000:01:00.0".
fn canonical_name(name: &str) -> String {
    let b = name.as_bytes();
    let short_pci = b.len() == 7
        && b[2] == b':'
        && b[5] == b'.'
        && name
            .chars()
            .filter(|c| *c != ':' && *c != '.')
            .all(|c| c.is_ascii_hexdigit());
    if short_pci {
        format!("0000:{name}")
    } else {
        name.to_owned()
    }
}

impl Port {
    /// Finds, or attaches, the device `devargs` names:
    ///
    /// - a PCI address with optional arguments (`0000:01:00.0`,
    ///   `01:00.0,rxq_cqe_comp_en=0`), already probed by EAL (`-a`) or
    ///   hot-plugged here;
    /// - a virtual device (`net_pcap0,rx_pcap=in.pcap`), given to EAL with
    ///   `--vdev` or created here.
    ///
    /// Hot-plugging uses `rte_dev_probe`, which takes both forms.
    ///
    /// The port is looked up by the name before the first comma, so a
    /// device EAL already knows is not probed twice.
    pub fn probe(devargs: &str) -> Result<Port, DpdkError> {
        let name = canonical_name(devargs.split(',').next().unwrap_or("").trim());
        if let Some(port) = Self::by_name(&name)? {
            return Ok(port);
        }
        let c = CString::new(devargs.trim())
            .map_err(|_| DpdkError::InvalidArgument(format!("devargs with NUL: {devargs:?}")))?;
        // SAFETY: valid C string. The buses parse it: a vdev driver name goes
        // to the vdev bus, an address to PCI.
        let ret = unsafe { sys::rte_dev_probe(c.as_ptr()) };
        DpdkError::check("rte_dev_probe", ret)?;
        Self::by_name(&name)?.ok_or(DpdkError::NoSuchPort(name))
    }

    /// The port with this ethdev name, if any.
    pub fn by_name(name: &str) -> Result<Option<Port>, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::InvalidArgument(format!("port name {name:?}")))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        Ok((ret == 0).then_some(Port { id }))
    }

    pub fn from_id(id: u16) -> Result<Port, DpdkError> {
        // SAFETY: validity check only.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 1 {
            Ok(Port { id })
        } else {
            Err(DpdkError::NoSuchPort(id.to_string()))
        }
    }

    /// Ports usable by this process.
    pub fn count() -> u16 {
        // SAFETY: plain getter.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    fn info(&self) -> Result<sys::rte_eth_dev_info, DpdkError> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: out pointer to a zeroed struct of the right type.
        let ret = unsafe { sys::rte_eth_dev_info_get(self.id, &mut info) };
        DpdkError::check("rte_eth_dev_info_get", ret)?;
        Ok(info)
    }

    /// The most TX queues the device offers.
    pub fn max_tx_queues(&self) -> Result<u16, DpdkError> {
        Ok(self.info()?.max_tx_queues)
    }

    /// The PMD's name (`net_pcap`, `net_ixgbe`...).
    pub fn driver_name(&self) -> Result<String, DpdkError> {
        let info = self.info()?;
        if info.driver_name.is_null() {
            return Ok(String::new());
        }
        // SAFETY: DPDK's static driver name string.
        Ok(unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned())
    }

    /// Configures the port and sets up its queues, with RX buffers from
    /// `pool`. The port must be stopped. Queue handles from an earlier
    /// configure must not be used afterwards.
    pub fn configure(&self, cfg: &EthdevConf, pool: Mempool) -> Result<Configured, DpdkError> {
        let info = self.info()?;
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(DpdkError::InvalidArgument(
                "a port needs at least one RX and one TX queue".into(),
            ));
        }
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(DpdkError::InvalidArgument(format!(
                "port {}: {}/{} rx/tx queues asked, device allows {}/{}",
                self.id, cfg.rx_queues, cfg.tx_queues, info.max_rx_queues, info.max_tx_queues
            )));
        }

        let mut conf = sys::rte_eth_conf::default();
        let mut rss_hf = 0;
        if cfg.rss && cfg.rx_queues > 1 {
            let wanted = sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP;
            rss_hf = wanted & info.flow_type_rss_offloads;
            if rss_hf != 0 {
                conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
                // A NULL key selects the driver's default key.
                conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            }
        }
        // The NIC's verdict on IPv4 header checksums, where it can give one
        // (`Mbuf::rx_ip_csum`): the per-packet path then skips its own sum.
        // Not the TCP/UDP offload: on virtio it negotiates GUEST_CSUM, and
        // the host may then hand over partial checksums (flagged NONE) that
        // a NAT rewrite would forward as if whole. Where a PMD reports L4
        // verdicts anyway, `Mbuf::rx_l4_csum` uses them.
        conf.rxmode.offloads |= info.rx_offload_capa & sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
        if let Some(mtu) = cfg.mtu {
            if mtu < info.min_mtu || mtu > info.max_mtu {
                return Err(DpdkError::InvalidArgument(format!(
                    "port {}: MTU {mtu} outside the device's {}..={}",
                    self.id, info.min_mtu, info.max_mtu
                )));
            }
            conf.rxmode.mtu = mtu.into();
        }

        // SAFETY: conf is a fully initialised rte_eth_conf.
        let ret = unsafe { sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) };
        DpdkError::check("rte_eth_dev_configure", ret)?;

        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: two valid out pointers.
        let ret = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc) };
        DpdkError::check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;

        // SAFETY: plain getter. -1 (unknown, e.g. vdevs) means any socket.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 {
            sys::SOCKET_ID_ANY as c_uint
        } else {
            socket as c_uint
        };

        for q in 0..cfg.rx_queues {
            // SAFETY: NULL rxconf selects the driver defaults; the pool
            // outlives the port (pools are never freed).
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(self.id, q, rx_desc, socket, std::ptr::null(), pool.as_ptr())
            };
            DpdkError::check("rte_eth_rx_queue_setup", ret)?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL txconf selects the driver defaults.
            let ret = unsafe { sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket, std::ptr::null()) };
            DpdkError::check("rte_eth_tx_queue_setup", ret)?;
        }

        Ok(Configured {
            rx: (0..cfg.rx_queues)
                .map(|queue| RxQueue {
                    port: self.id,
                    queue,
                    _not_sync: PhantomData,
                })
                .collect(),
            tx: (0..cfg.tx_queues)
                .map(|queue| TxQueue {
                    port: self.id,
                    queue,
                    _not_sync: PhantomData,
                })
                .collect(),
            rss_hf,
            rx_desc,
            tx_desc,
        })
    }

    pub fn start(&self) -> Result<(), DpdkError> {
        // SAFETY: plain control call.
        DpdkError::check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(self.id) }).map(drop)
    }

    pub fn stop(&self) -> Result<(), DpdkError> {
        // SAFETY: plain control call.
        DpdkError::check("rte_eth_dev_stop", unsafe { sys::rte_eth_dev_stop(self.id) }).map(drop)
    }

    /// Whether the PMD reports the link up, without waiting for autonegotiation.
    pub fn link_up(&self) -> Result<bool, DpdkError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid out pointer.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        DpdkError::check("rte_eth_link_get_nowait", ret)?;
        Ok(link.link_status() != 0)
    }

    /// Sets the link administratively up or down; on a net_tap this sets the
    /// kernel interface up or down.
    pub fn set_link(&self, up: bool) -> Result<(), DpdkError> {
        // SAFETY: plain control calls.
        let ret = unsafe {
            if up {
                sys::rte_eth_dev_set_link_up(self.id)
            } else {
                sys::rte_eth_dev_set_link_down(self.id)
            }
        };
        DpdkError::check("rte_eth_dev_set_link_up/down", ret).map(drop)
    }

    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid out pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(self.id, &mut mac) };
        DpdkError::check("rte_eth_macaddr_get", ret)?;
        Ok(mac.addr_bytes)
    }

    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        // SAFETY: plain control calls.
        let ret = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.id)
            } else {
                sys::rte_eth_promiscuous_disable(self.id)
            }
        };
        DpdkError::check("rte_eth_promiscuous_enable/disable", ret).map(drop)
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid out pointer.
        let ret = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        DpdkError::check("rte_eth_stats_get", ret)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: plain control call.
        DpdkError::check("rte_eth_stats_reset", unsafe {
            sys::rte_eth_stats_reset(self.id)
        })
        .map(drop)
    }
}

/// The right to poll one RX queue. DPDK queues are not thread-safe: exactly
/// one handle exists per queue, it can move to a worker lcore but not be
/// shared.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

/// The right to transmit on one TX queue (see [`RxQueue`]).
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

fn burst_room(room: usize) -> u16 {
    room.min(u16::MAX as usize) as u16
}

impl RxQueue {
    pub fn port(&self) -> Port {
        Port { id: self.port }
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives into the free slots of `burst`; returns how many arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        self.rx_burst_upto(burst, N)
    }

    /// As `rx_burst`, taking at most `max` packets.
    pub fn rx_burst_upto<const N: usize>(&mut self, burst: &mut MbufBurst<N>, max: usize) -> usize {
        let room = burst_room((N - burst.len).min(max));
        // SAFETY: the `room` slots after len are in bounds; the PMD writes
        // that many valid mbufs at most, which the burst then owns.
        let n = unsafe {
            sys::rvs_eth_rx_burst(
                self.port,
                self.queue,
                burst.ptrs.as_mut_ptr().add(burst.len),
                room,
            )
        };
        burst.len += n as usize;
        n as usize
    }

    /// Raw form: the caller owns (and must free) the returned pointers.
    #[inline]
    pub fn rx_burst_raw(&mut self, pkts: &mut [*mut sys::rte_mbuf]) -> usize {
        // SAFETY: writes at most pkts.len() pointers into the slice.
        unsafe {
            sys::rvs_eth_rx_burst(self.port, self.queue, pkts.as_mut_ptr(), burst_room(pkts.len())) as usize
        }
    }
}

impl TxQueue {
    pub fn port(&self) -> Port {
        Port { id: self.port }
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Queues the burst's mbufs for transmission, from the front. Sent mbufs
    /// leave the burst (the driver frees them); those the ring had no room
    /// for stay, at the front, for the caller to retry or free. Returns the
    /// number sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        let n = burst_room(burst.len);
        // SAFETY: ptrs[..len] are owned valid mbufs; the PMD takes the first
        // `sent` of them.
        let sent =
            unsafe { sys::rvs_eth_tx_burst(self.port, self.queue, burst.ptrs.as_mut_ptr(), n) } as usize;
        burst.consume_front(sent);
        sent
    }

    /// Raw form of [`TxQueue::tx_burst`].
    ///
    /// # Safety
    /// Every pointer in `pkts` must be a valid mbuf the caller owns; the
    /// first `returned` of them then belong to the driver.
    #[inline]
    pub unsafe fn tx_burst_raw(&mut self, pkts: &mut [*mut sys::rte_mbuf]) -> usize {
        // SAFETY: the caller's contract.
        unsafe {
            sys::rvs_eth_tx_burst(self.port, self.queue, pkts.as_mut_ptr(), burst_room(pkts.len())) as usize
        }
    }
}
