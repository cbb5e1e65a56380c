//! `rte_flow`, only as far as FULLNAT reply steering needs it: one pattern
//! ETH / IPV4 dst / TCP|UDP dst port (spec + mask) and one QUEUE action.
//! The policy (which rules, which mode) is `fnat::steer`'s; this is the
//! device side of its `FlowDevice`.

use std::ffi::CStr;
use std::fmt;
use std::ptr::{self, NonNull};

use super::Port;
use crate::flow::Proto;
use crate::fnat::steer::{FlowDevice, FlowRule};
use dpdk_sys as sys;

/// A refused `rte_flow` call: the call, the errno and the PMD's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowError {
    pub op: &'static str,
    pub errno: i32,
    /// `rte_flow_error.type` (what part of the rule it was about).
    pub kind: u32,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = std::io::Error::from_raw_os_error(self.errno);
        let text = errno.to_string();
        // "Function not implemented (os error 38)": the message, if the PMD
        // gave one that says more than the errno.
        if self.message.is_empty() || text.starts_with(self.message.as_str()) {
            write!(f, "{}: {text}", self.op)
        } else {
            write!(f, "{}: {} ({text})", self.op, self.message)
        }
    }
}

impl std::error::Error for FlowError {}

impl FlowError {
    fn from_c(op: &'static str, ret: i32, e: &sys::rte_flow_error) -> Self {
        // rte_flow calls return -errno and set rte_errno alike; take either.
        let errno = if ret < 0 {
            ret.saturating_neg()
        } else {
            // SAFETY: reads a thread-local int.
            unsafe { sys::rvs_errno() }
        };
        let message = if e.message.is_null() {
            String::new()
        } else {
            // SAFETY: PMDs point `message` at a static NUL-terminated string.
            unsafe { CStr::from_ptr(e.message) }
                .to_string_lossy()
                .into_owned()
        };
        FlowError {
            op,
            errno,
            kind: e.type_,
            message,
        }
    }
}

/// The C structures of one rule, built on the stack for the duration of a
/// call (`rte_flow_create` copies what it keeps).
struct RuleC {
    attr: sys::rte_flow_attr,
    ip_spec: sys::rte_flow_item_ipv4,
    ip_mask: sys::rte_flow_item_ipv4,
    tcp_spec: sys::rte_flow_item_tcp,
    tcp_mask: sys::rte_flow_item_tcp,
    udp_spec: sys::rte_flow_item_udp,
    udp_mask: sys::rte_flow_item_udp,
    queue: sys::rte_flow_action_queue,
}

impl RuleC {
    fn new(r: &FlowRule) -> RuleC {
        let mut c = RuleC {
            attr: Default::default(),
            ip_spec: Default::default(),
            ip_mask: Default::default(),
            tcp_spec: Default::default(),
            tcp_mask: Default::default(),
            udp_spec: Default::default(),
            udp_mask: Default::default(),
            queue: sys::rte_flow_action_queue { index: r.queue },
        };
        c.attr.set_ingress(1);
        // Network order in memory, as the headers' rte_be* fields.
        c.ip_spec.hdr.dst_addr = u32::from(r.lip).to_be();
        c.ip_mask.hdr.dst_addr = u32::MAX;
        let (port, mask) = ((r.dport & r.mask).to_be(), r.mask.to_be());
        c.tcp_spec.hdr.dst_port = port;
        c.tcp_mask.hdr.dst_port = mask;
        c.udp_spec.hdr.dst_port = port;
        c.udp_mask.hdr.dst_port = mask;
        c
    }

    /// Calls `f` with the pattern and action arrays, which point into `self`.
    fn with<T>(
        &self,
        proto: Proto,
        f: impl FnOnce(&sys::rte_flow_attr, *const sys::rte_flow_item, *const sys::rte_flow_action) -> T,
    ) -> T {
        let item = |type_, spec: *const std::ffi::c_void, mask: *const std::ffi::c_void| sys::rte_flow_item {
            type_,
            spec,
            last: ptr::null(),
            mask,
        };
        let none = ptr::null();
        let (l4, spec, mask) = match proto {
            Proto::Tcp => (
                sys::RTE_FLOW_ITEM_TYPE_TCP,
                &self.tcp_spec as *const _ as *const _,
                &self.tcp_mask as *const _ as *const _,
            ),
            Proto::Udp => (
                sys::RTE_FLOW_ITEM_TYPE_UDP,
                &self.udp_spec as *const _ as *const _,
                &self.udp_mask as *const _ as *const _,
            ),
        };
        let pattern = [
            item(sys::RTE_FLOW_ITEM_TYPE_ETH, none, none),
            item(
                sys::RTE_FLOW_ITEM_TYPE_IPV4,
                &self.ip_spec as *const _ as *const _,
                &self.ip_mask as *const _ as *const _,
            ),
            item(l4, spec, mask),
            item(sys::RTE_FLOW_ITEM_TYPE_END, none, none),
        ];
        let actions = [
            sys::rte_flow_action {
                type_: sys::RTE_FLOW_ACTION_TYPE_QUEUE,
                conf: &self.queue as *const _ as *const _,
            },
            sys::rte_flow_action {
                type_: sys::RTE_FLOW_ACTION_TYPE_END,
                conf: none,
            },
        ];
        f(&self.attr, pattern.as_ptr(), actions.as_ptr())
    }
}

/// An installed rule; `destroy` removes it (dropping it leaves it in place:
/// a rule only steers, and the port's stop removes them all).
#[derive(Debug)]
pub struct Flow {
    port: u16,
    flow: NonNull<sys::rte_flow>,
}

// SAFETY: the handle is only passed back to rte_flow_destroy, by one thread
// at a time (the control thread owns every Flow).
unsafe impl Send for Flow {}

/// Whether `port` would take `rule`.
pub fn validate(port: &Port, rule: &FlowRule) -> Result<(), FlowError> {
    let c = RuleC::new(rule);
    let mut err = sys::rte_flow_error::default();
    // SAFETY: every pointer is into `c` or the arrays `with` builds, alive for the call.
    let ret = c.with(rule.proto, |attr, pat, act| unsafe {
        sys::rte_flow_validate(port.id(), attr, pat, act, &mut err)
    });
    if ret == 0 {
        Ok(())
    } else {
        Err(FlowError::from_c("rte_flow_validate", ret, &err))
    }
}

impl Flow {
    /// Installs `rule` on `port`.
    pub fn create(port: &Port, rule: &FlowRule) -> Result<Flow, FlowError> {
        let c = RuleC::new(rule);
        let mut err = sys::rte_flow_error::default();
        // SAFETY: as in `validate`; the PMD copies what it keeps.
        let p = c.with(rule.proto, |attr, pat, act| unsafe {
            sys::rte_flow_create(port.id(), attr, pat, act, &mut err)
        });
        match NonNull::new(p) {
            Some(flow) => Ok(Flow {
                port: port.id(),
                flow,
            }),
            // NULL, and rte_errno says why.
            None => Err(FlowError::from_c("rte_flow_create", 0, &err)),
        }
    }

    pub fn destroy(self) -> Result<(), FlowError> {
        let mut err = sys::rte_flow_error::default();
        // SAFETY: `flow` came from rte_flow_create on this port and is
        // destroyed once (`self` is consumed).
        let ret = unsafe { sys::rte_flow_destroy(self.port, self.flow.as_ptr(), &mut err) };
        if ret == 0 {
            Ok(())
        } else {
            Err(FlowError::from_c("rte_flow_destroy", ret, &err))
        }
    }
}

/// `fnat::steer`'s device: rvs-dp's ports by index.
pub struct FlowPorts {
    ports: Vec<Port>,
}

impl FlowPorts {
    /// `ports[i]` is rvs-dp's port `i`.
    pub fn new(ports: Vec<Port>) -> FlowPorts {
        FlowPorts { ports }
    }

    fn port(&self, i: u16) -> Result<&Port, String> {
        self.ports
            .get(usize::from(i))
            .ok_or_else(|| format!("no port {i}"))
    }
}

impl FlowDevice for FlowPorts {
    type Handle = Flow;

    fn validate(&mut self, port: u16, rule: &FlowRule) -> Result<(), String> {
        validate(self.port(port)?, rule).map_err(|e| e.to_string())
    }

    fn create(&mut self, port: u16, rule: &FlowRule) -> Result<Flow, String> {
        Flow::create(self.port(port)?, rule).map_err(|e| e.to_string())
    }

    fn destroy(&mut self, _port: u16, handle: Flow) -> Result<(), String> {
        handle.destroy().map_err(|e| e.to_string())
    }
}
