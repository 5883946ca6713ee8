//! What the kernel says about a link's IPv6 state, from `/proc/net/if_inet6` and
//! `/proc/net/ipv6_route`, and the decision "is IPv6 usable on this link".

use std::net::Ipv6Addr;

/// `IFA_F_*` bits as they appear (low 8 bits) in `/proc/net/if_inet6`.
const IFA_F_DADFAILED: u8 = 0x08;
const IFA_F_TENTATIVE: u8 = 0x40;
/// `RTF_GATEWAY` and `RTF_REJECT` in `/proc/net/ipv6_route`'s flags.
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;

/// Address scopes (`IPV6_ADDR_*` >> 16 as printed by the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Site,
    Link,
    Host,
    Other(u8),
}

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
    pub scope: Scope,
    pub flags: u8,
    pub dev: String,
}

impl IfAddr {
    /// Global or site scope (slirp's `fec0::/64` is site-local), past DAD and not failed.
    pub fn usable(&self) -> bool {
        matches!(self.scope, Scope::Global | Scope::Site)
            && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }

    /// DAD found another host with this address.
    pub fn dad_failed(&self) -> bool {
        self.flags & IFA_F_DADFAILED != 0
    }
}

fn hex_addr(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

/// Parses `/proc/net/if_inet6`: `addr ifindex prefixlen scope flags name`, all hex.
pub fn parse_if_inet6(text: &str) -> Vec<IfAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let byte = |s: &str| u8::from_str_radix(s, 16).ok();
            let scope = match byte(f[3])? {
                0x00 => Scope::Global,
                0x40 => Scope::Site,
                0x20 => Scope::Link,
                0x10 => Scope::Host,
                o => Scope::Other(o),
            };
            Some(IfAddr {
                addr: hex_addr(f[0])?,
                prefix: byte(f[2])?,
                scope,
                flags: byte(f[4])?,
                dev: f[5].to_string(),
            })
        })
        .collect()
}

/// The gateways of default routes on `dev` in `/proc/net/ipv6_route`
/// (`dst plen src plen nexthop metric refcnt use flags dev`).
pub fn default_gateways(text: &str, dev: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10
                || f[9] != dev
                || f[1] != "00"
                || hex_addr(f[0])? != Ipv6Addr::UNSPECIFIED
            {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & RTF_REJECT != 0 || flags & RTF_GATEWAY == 0 {
                return None;
            }
            hex_addr(f[4])
        })
        .collect()
}

/// Where a link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A usable address and a default route: IPv6 works on this link.
    Ready {
        addr: Ipv6Addr,
        prefix: u8,
        gateway: Ipv6Addr,
    },
    /// Not yet; what is missing, for the log.
    Waiting(&'static str),
    /// Every non-link-local address failed DAD: another host holds it.
    DadFailed(Ipv6Addr),
}

/// The wait decision for `dev`, from the two proc files' text.
pub fn readiness(if_inet6: &str, ipv6_route: &str, dev: &str) -> Readiness {
    let addrs: Vec<IfAddr> = parse_if_inet6(if_inet6)
        .into_iter()
        .filter(|a| a.dev == dev && matches!(a.scope, Scope::Global | Scope::Site))
        .collect();
    let Some(a) = addrs.iter().find(|a| a.usable()) else {
        return match addrs.iter().find(|a| a.dad_failed()) {
            Some(f) if addrs.iter().all(IfAddr::dad_failed) => Readiness::DadFailed(f.addr),
            _ if addrs.is_empty() => Readiness::Waiting("no global address yet"),
            _ => Readiness::Waiting("the address is still tentative (duplicate address detection)"),
        };
    };
    match default_gateways(ipv6_route, dev).first() {
        Some(gw) => Readiness::Ready {
            addr: a.addr,
            prefix: a.prefix,
            gateway: *gw,
        },
        None => Readiness::Waiting("no IPv6 default route yet"),
    }
}

/// [`readiness`] of `dev` now.
pub fn current(dev: &str) -> Readiness {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    readiness(
        &read("/proc/net/if_inet6"),
        &read("/proc/net/ipv6_route"),
        dev,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Observed in the guest under slirp: link-local done, the SLAAC address tentative.
    const TENTATIVE: &str = "\
fe80000000000000505400fffe123456 02 40 20 80     eth0
fec0000000000000505400fffe123456 02 40 40 40     eth0
00000000000000000000000000000001 01 80 10 80       lo
";
    const ROUTES: &str = "\
fec00000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00040001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000002 00000400 00000001 00000000 00450003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn if_inet6_lines_parse() {
        let a = parse_if_inet6(TENTATIVE);
        assert_eq!(a.len(), 3);
        assert_eq!(
            a[1].addr,
            "fec0::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            (a[1].prefix, a[1].scope, a[1].flags),
            (64, Scope::Site, 0x40)
        );
        assert_eq!(a[0].scope, Scope::Link);
        assert_eq!(a[2].dev, "lo");
        assert!(parse_if_inet6("garbage\n0 1 2\n").is_empty());
    }

    #[test]
    fn a_tentative_address_is_not_usable_yet() {
        assert_eq!(
            readiness(TENTATIVE, ROUTES, "eth0"),
            Readiness::Waiting("the address is still tentative (duplicate address detection)")
        );
    }

    #[test]
    fn a_site_local_address_past_dad_with_a_default_route_is_ready() {
        let done = TENTATIVE.replace("40 40     eth0", "40 00     eth0");
        assert_eq!(
            readiness(&done, ROUTES, "eth0"),
            Readiness::Ready {
                addr: "fec0::5054:ff:fe12:3456".parse().unwrap(),
                prefix: 64,
                gateway: "fe80::2".parse().unwrap(),
            }
        );
        assert_eq!(
            readiness(&done, "", "eth0"),
            Readiness::Waiting("no IPv6 default route yet")
        );
        assert_eq!(
            readiness(&done, ROUTES, "eth1"),
            Readiness::Waiting("no global address yet"),
            "another link's address does not count"
        );
    }

    #[test]
    fn link_local_only_and_dad_failures_are_told_apart() {
        let ll = "fe80000000000000505400fffe123456 02 40 20 80     eth0\n";
        assert_eq!(
            readiness(ll, ROUTES, "eth0"),
            Readiness::Waiting("no global address yet")
        );
        let failed = TENTATIVE.replace("40 40     eth0", "00 08     eth0");
        assert_eq!(
            readiness(&failed, ROUTES, "eth0"),
            Readiness::DadFailed("fec0::5054:ff:fe12:3456".parse().unwrap())
        );
    }

    #[test]
    fn the_loopback_reject_route_is_not_a_default_route() {
        assert!(default_gateways(ROUTES, "lo").is_empty());
        assert_eq!(
            default_gateways(ROUTES, "eth0"),
            vec!["fe80::2".parse::<Ipv6Addr>().unwrap()]
        );
    }
}
