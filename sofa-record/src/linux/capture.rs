//! `--net-capture`: packet headers from an AF_PACKET socket (every
//! interface, headers only), for the flow table and the host matrix.

use crate::packet;
use sofa_trace::tables::NetEvent;
use sofa_trace::{TableWriter, TraceError};
use std::collections::HashMap;

/// Bytes kept of each frame: Ethernet + IPv6 + TCP headers fit.
const SNAPLEN: usize = 128;
const PACKET_OUTGOING: u8 = 4;

pub struct Capture {
    fd: libc::c_int,
    names: HashMap<i32, Option<String>>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: closing the socket we own.
        unsafe { libc::close(self.fd) };
    }
}

/// Opens the capture socket; `Err` says why (usually: not root / no CAP_NET_RAW).
pub fn open() -> Result<Capture, String> {
    let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(format!(
            "packet socket: {} (needs root or CAP_NET_RAW)",
            std::io::Error::last_os_error()
        ));
    }
    // Queued frames are charged their full size, and the socket is read
    // every ~10 ms: a large buffer keeps bursts from being dropped.
    let size: libc::c_int = 32 << 20;
    // SAFETY: setting an int option on our socket (FORCE works for root).
    unsafe {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let p = (&size as *const libc::c_int).cast();
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
    }
    Ok(Capture {
        fd,
        names: HashMap::new(),
    })
}

fn interface_name(index: i32, cache: &mut HashMap<i32, Option<String>>) -> Option<String> {
    cache
        .entry(index)
        .or_insert_with(|| {
            let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
            let p = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr()) };
            (!p.is_null()).then(|| {
                // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
                unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .clone()
}

impl Capture {
    /// Reads every frame queued now (without blocking) into `out`; returns
    /// how many were kept. Called by the net collector after each pass.
    pub fn poll(&mut self, out: &mut TableWriter<NetEvent>) -> Result<u64, TraceError> {
        let mut buf = [0u8; SNAPLEN];
        let mut kept = 0;
        loop {
            // SAFETY: zeroed sockaddr_ll is a valid out-parameter.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut addr_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // MSG_TRUNC: the frame's real length, though only SNAPLEN bytes are copied.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    (&mut addr as *mut libc::sockaddr_ll).cast(),
                    &mut addr_len,
                )
            };
            if n < 0 {
                return Ok(kept); // nothing queued (EAGAIN) or interrupted
            }
            let time_ns = super::host::monotonic_ns();
            let ifname = interface_name(addr.sll_ifindex, &mut self.names);
            // Loopback frames are seen leaving and arriving: keep one copy.
            if ifname.as_deref() == Some("lo") && addr.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let copied = (n as usize).min(SNAPLEN);
            let Some(h) = packet::parse_ethernet(&buf[..copied]) else {
                continue;
            };
            out.push(NetEvent {
                time_ns,
                source: sofa_trace::NetSource::Capture.as_str().into(),
                ifname,
                len: n as u32,
                pid: None,
                protocol: Some(h.protocol),
                src_addr: Some(h.src),
                dst_addr: Some(h.dst),
                src_port: h.src_port.map(u32::from),
                dst_port: h.dst_port.map(u32::from),
            })?;
            kept += 1;
        }
    }
}
