//! Router advertisements (RFC 4861 §4.2) as a raw ICMPv6 socket receives them: the M
//! and O flags (which the kernel does not expose in `/proc/sys/net/ipv6/conf/<if>/`),
//! prefixes, and RDNSS/DNSSL (RFC 8106, which the kernel leaves to user space).

use super::dhcp6::domain_names;
use std::net::Ipv6Addr;

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
const OPT_PREFIX_INFO: u8 = 3;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;

/// A prefix the router announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L: on-link.
    pub on_link: bool,
    /// A: hosts may form addresses in it (SLAAC).
    pub autonomous: bool,
}

/// What a router advertisement says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterAdvert {
    /// M: addresses come from DHCPv6.
    pub managed: bool,
    /// O: other configuration (DNS) comes from DHCPv6.
    pub other: bool,
    /// Seconds this router is a default router (0: not one).
    pub lifetime: u16,
    pub prefixes: Vec<Prefix>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl RouterAdvert {
    /// True when some prefix lets the host configure its own address.
    pub fn slaac(&self) -> bool {
        self.prefixes.iter().any(|p| p.autonomous && p.len == 64)
    }
}

/// A router solicitation without options (RFC 4861 §4.1; the kernel fills the checksum
/// of a raw ICMPv6 socket).
pub fn solicitation() -> [u8; 8] {
    [ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]
}

/// Parses an ICMPv6 message; `None` if it is not a well-formed router advertisement.
/// Options with a lifetime of 0 (withdrawn) are left out.
pub fn parse(msg: &[u8]) -> Option<RouterAdvert> {
    if msg.len() < 16 || msg[0] != ROUTER_ADVERTISEMENT || msg[1] != 0 {
        return None;
    }
    let mut ra = RouterAdvert {
        managed: msg[5] & 0x80 != 0,
        other: msg[5] & 0x40 != 0,
        lifetime: u16::from_be_bytes([msg[6], msg[7]]),
        ..Default::default()
    };
    let mut rest = &msg[16..];
    while rest.len() >= 2 {
        let len = rest[1] as usize * 8;
        // A zero length is invalid and would loop forever (RFC 4861 §4.6).
        let body = rest.get(..len).filter(|_| len > 0)?;
        match body[0] {
            OPT_PREFIX_INFO if len == 32 => {
                let p: [u8; 16] = body[16..32].try_into().ok()?;
                ra.prefixes.push(Prefix {
                    prefix: Ipv6Addr::from(p),
                    len: body[2],
                    on_link: body[3] & 0x80 != 0,
                    autonomous: body[3] & 0x40 != 0,
                });
            }
            OPT_RDNSS if len >= 24 && lifetime(body) > 0 => ra.dns.extend(
                body[8..]
                    .chunks_exact(16)
                    .filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from)),
            ),
            OPT_DNSSL if len >= 16 && lifetime(body) > 0 => {
                ra.search.extend(domain_names(&body[8..]))
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Some(ra)
}

fn lifetime(opt: &[u8]) -> u32 {
    opt.get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dnsmasq's stateful RA (observed): M and O, prefix fd42:2::/64 with L only, RDNSS,
    /// DNSSL, and an MTU option that is skipped.
    fn dnsmasq_ra() -> Vec<u8> {
        let mut m = vec![134, 0, 0, 0, 64, 0xc0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut prefix = vec![
            3, 4, 64, 0x80, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        ];
        prefix.extend("fd42:2::".parse::<Ipv6Addr>().unwrap().octets());
        m.extend(prefix);
        m.extend([5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        let mut rdnss = vec![25, 3, 0, 0, 0, 0, 0x04, 0xb0];
        rdnss.extend("fd42:2::1".parse::<Ipv6Addr>().unwrap().octets());
        m.extend(rdnss);
        m.extend([31, 3, 0, 0, 0, 0, 0x04, 0xb0]);
        m.extend(b"\x04prov\x04test\x00\x00\x00\x00\x00\x00");
        m
    }

    #[test]
    fn a_stateful_ra_gives_flags_prefix_rdnss_and_dnssl() {
        let ra = parse(&dnsmasq_ra()).unwrap();
        assert!(ra.managed && ra.other);
        assert_eq!(ra.lifetime, 1800);
        assert_eq!(
            ra.prefixes,
            vec![Prefix {
                prefix: "fd42:2::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: false
            }]
        );
        assert!(!ra.slaac(), "L only: addresses come from DHCPv6");
        assert_eq!(ra.dns, vec!["fd42:2::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(ra.search, vec!["prov.test"]);
    }

    #[test]
    fn slirps_ra_has_no_flags_and_an_autonomous_prefix() {
        let mut m = vec![134, 0, 0, 0, 255, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut prefix = vec![
            3, 4, 64, 0xc0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0,
        ];
        prefix.extend("fec0::".parse::<Ipv6Addr>().unwrap().octets());
        m.extend(prefix);
        let ra = parse(&m).unwrap();
        assert!(!ra.managed && !ra.other && ra.slaac());
        assert!(ra.dns.is_empty() && ra.search.is_empty());
    }

    #[test]
    fn withdrawn_rdnss_and_malformed_options_are_handled() {
        let mut m = dnsmasq_ra();
        // RDNSS lifetime 0: withdrawn.
        let at = 16 + 32 + 8;
        m[at + 4..at + 8].copy_from_slice(&[0, 0, 0, 0]);
        assert!(parse(&m).unwrap().dns.is_empty());
        let mut bad = dnsmasq_ra();
        bad[17] = 0; // the prefix option's length
        assert_eq!(parse(&bad), None, "a zero-length option invalidates the RA");
        for cut in 0..m.len() {
            let _ = parse(&m[..cut]);
        }
        assert_eq!(parse(&solicitation()), None, "not an RA");
    }
}
