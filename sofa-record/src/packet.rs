//! Packet header parsing for `--net-capture`: Ethernet, IPv4/IPv6, TCP/UDP.
//! Takes the first bytes of a frame (headers only are captured).

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or `ip-N` for another IP protocol.
    pub protocol: String,
    pub src: String,
    pub dst: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

/// Parses an Ethernet frame's headers; `None` for non-IP frames or short data.
pub fn parse_ethernet(frame: &[u8]) -> Option<Headers> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut offset = 14;
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        offset = 18;
    }
    parse_ip(ethertype, frame.get(offset..)?)
}

/// Parses an IP packet given its ethertype.
pub fn parse_ip(ethertype: u16, ip: &[u8]) -> Option<Headers> {
    let (protocol, src, dst, transport) = match ethertype {
        ETH_P_IPV4 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]).to_string();
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]).to_string();
            (ip[9], src, dst, ip.get(ihl..))
        }
        ETH_P_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let addr = |at: usize| {
                let bytes: [u8; 16] = ip[at..at + 16].try_into().expect("16 bytes");
                Ipv6Addr::from(bytes).to_string()
            };
            (ip[6], addr(8), addr(24), ip.get(40..))
        }
        _ => return None,
    };
    let ports = |t: Option<&[u8]>| -> (Option<u16>, Option<u16>) {
        match t {
            Some(t) if t.len() >= 4 => (
                Some(u16::from_be_bytes([t[0], t[1]])),
                Some(u16::from_be_bytes([t[2], t[3]])),
            ),
            _ => (None, None),
        }
    };
    let (name, (src_port, dst_port)) = match protocol {
        6 => ("tcp".to_owned(), ports(transport)),
        17 => ("udp".to_owned(), ports(transport)),
        1 => ("icmp".to_owned(), (None, None)),
        58 => ("icmpv6".to_owned(), (None, None)),
        n => (format!("ip-{n}"), (None, None)),
    };
    Some(Headers {
        protocol: name,
        src,
        dst,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(ethertype.to_be_bytes());
        f
    }

    #[test]
    fn ipv4_tcp() {
        let mut f = eth(0x0800);
        let mut ip = vec![
            0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend([0x9c, 0x40, 0x00, 0x50]); // 40000 -> 80
        f.extend(ip);
        let h = parse_ethernet(&f).unwrap();
        assert_eq!(
            h,
            Headers {
                protocol: "tcp".into(),
                src: "10.0.0.1".into(),
                dst: "10.0.0.2".into(),
                src_port: Some(40000),
                dst_port: Some(80),
            }
        );
    }

    #[test]
    fn vlan_ipv6_udp_and_non_ip() {
        let mut f = eth(0x8100);
        f.extend([0, 1]); // VLAN tag
        f.extend(0x86ddu16.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        ip.extend(Ipv6Addr::LOCALHOST.octets());
        ip.extend(Ipv6Addr::LOCALHOST.octets());
        ip.extend([0x12, 0x34, 0x00, 0x35]);
        f.extend(ip);
        let h = parse_ethernet(&f).unwrap();
        assert_eq!((h.protocol.as_str(), h.src.as_str()), ("udp", "::1"));
        assert_eq!((h.src_port, h.dst_port), (Some(0x1234), Some(53)));
        assert_eq!(parse_ethernet(&eth(0x0806)), None, "ARP");
        assert_eq!(parse_ethernet(&[0u8; 10]), None, "short");
        let mut truncated = eth(0x0800);
        truncated.extend([0x45, 0, 0]);
        assert_eq!(parse_ethernet(&truncated), None);
    }
}
