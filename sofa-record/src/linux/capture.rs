//! `--net-capture`: packet headers from an AF_PACKET socket (every
//! interface, headers only), for the flow table and the host matrix.

use super::sys;
use crate::packet;
use sofa_trace::tables::NetEvent;
use sofa_trace::{TableWriter, TraceError};
use std::collections::HashMap;
use std::os::fd::OwnedFd;

/// Bytes kept of each frame: Ethernet + IPv6 + TCP headers fit.
const SNAPLEN: usize = 128;
const PACKET_OUTGOING: u8 = 4;

pub struct Capture {
    socket: OwnedFd,
    names: HashMap<i32, Option<String>>,
}

/// Opens the capture socket; `Err` says why (usually: not root / no CAP_NET_RAW).
pub fn open() -> Result<Capture, String> {
    let socket = sys::packet_socket()
        .map_err(|e| format!("packet socket: {e} (needs root or CAP_NET_RAW)"))?;
    // Queued frames are charged their full size, and the socket is read
    // every ~10 ms: a large buffer keeps bursts from being dropped.
    sys::set_receive_buffer(&socket, 32 << 20);
    Ok(Capture {
        socket,
        names: HashMap::new(),
    })
}

fn interface_name(index: i32, cache: &mut HashMap<i32, Option<String>>) -> Option<String> {
    cache
        .entry(index)
        .or_insert_with(|| sys::interface_name(index))
        .clone()
}

impl Capture {
    /// Reads every frame queued now (without blocking) into `out`; returns
    /// how many were kept. Called by the net collector after each pass.
    pub fn poll(&mut self, out: &mut TableWriter<NetEvent>) -> Result<u64, TraceError> {
        let mut buf = [0u8; SNAPLEN];
        let mut kept = 0;
        loop {
            let Some(frame) = sys::receive_frame(&self.socket, &mut buf) else {
                return Ok(kept); // nothing queued (EAGAIN) or interrupted
            };
            let n = frame.len;
            let time_ns = super::host::monotonic_ns();
            let ifname = interface_name(frame.ifindex, &mut self.names);
            // Loopback frames are seen leaving and arriving: keep one copy.
            if ifname.as_deref() == Some("lo") && frame.pkttype == PACKET_OUTGOING {
                continue;
            }
            let copied = n.min(SNAPLEN);
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
