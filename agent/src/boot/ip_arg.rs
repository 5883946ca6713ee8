//! The `ip=` kernel argument: the kernel's nfsroot format and dracut's forms, IPv4 and
//! IPv6 (addresses in brackets, the netmask a prefix length).
//!
//! | value | meaning |
//! |---|---|
//! | `on`, `any`, `auto` (and no `ip=` at all) | DHCPv4 and IPv6 as the router advertises, on every link |
//! | `dhcp`, `DEV:dhcp` | DHCPv4 only |
//! | `dhcp6`, `auto6`, `either6`, `DEV:dhcp6` … | IPv6 only: DHCPv6, SLAAC, or SLAAC falling back to DHCPv6 |
//! | `CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEV:off[:DNS0[:DNS1]]` | static, e.g. `[2001:db8::10]::[2001:db8::1]:64:web01:eth0:none` |
//! | `off`, `none` | no network configuration |

use std::net::{IpAddr, Ipv4Addr};

/// How IPv6 is configured on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Mode {
    /// As the router advertisement says: SLAAC for prefixes with A, DHCPv6 for
    /// addresses when M is set, DHCPv6 Information-request when only O is set.
    Ra,
    /// `dhcp6`: stateful DHCPv6 whatever the router says.
    Dhcp6,
    /// `auto6`: SLAAC only (DNS from the RA's RDNSS, or DHCPv6 when O is set).
    Auto6,
    /// `either6`: SLAAC, falling back to stateful DHCPv6 when no address came.
    Either6,
}

/// One `ip=` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    /// DHCPv4 on `device`, or on every link with carrier (`ip=dhcp`).
    Dhcp { device: Option<String> },
    /// Both families (the default; `ip=on|any|auto`): DHCPv4 and IPv6 as advertised.
    Any { device: Option<String> },
    /// IPv6 only (`ip=dhcp6|auto6|either6`).
    V6 {
        device: Option<String>,
        mode: V6Mode,
    },
    /// A static address.
    Static(StaticIp),
    /// No network configuration at all.
    Off,
}

/// A static address from `ip=CLIENT::GW:NETMASK:HOSTNAME:DEV:off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub hostname: Option<String>,
    /// Interface; `None` means the first link with carrier.
    pub device: Option<String>,
    pub dns: Vec<IpAddr>,
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

fn v6_mode(word: &str) -> Option<V6Mode> {
    match word {
        "dhcp6" => Some(V6Mode::Dhcp6),
        "auto6" => Some(V6Mode::Auto6),
        "either6" => Some(V6Mode::Either6),
        _ => None,
    }
}

/// Splits on `:` outside brackets and removes the brackets: `[fd00::1]::x` → `fd00::1`, ``, `x`.
fn fields(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0u32;
    for ch in v.chars() {
        match ch {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// Parses an `ip=` value.
pub fn parse_ip(v: &str) -> Result<IpConfig, String> {
    match v {
        "dhcp" => return Ok(IpConfig::Dhcp { device: None }),
        "on" | "any" | "auto" => return Ok(IpConfig::Any { device: None }),
        "off" | "none" => return Ok(IpConfig::Off),
        _ => {}
    }
    if let Some(mode) = v6_mode(v) {
        return Ok(IpConfig::V6 { device: None, mode });
    }
    let f = fields(v);
    // dracut's `ip=eth0:dhcp`, `ip=eth0:dhcp6`.
    if f.len() == 2 {
        if let Some(c) = autoconf_only(non_empty(&f[0]), &f[1]) {
            return Ok(c);
        }
    }
    let field = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
    let addr = |i: usize, what: &str| -> Result<Option<IpAddr>, String> {
        match field(i) {
            "" => Ok(None),
            s => s
                .parse()
                .map(Some)
                .map_err(|_| format!("{what} {s:?} is not an IP address")),
        }
    };
    let autoconf = field(6);
    let client = addr(0, "client address")?;
    let device = non_empty(field(5));
    match (client, autoconf) {
        (None, "") => Ok(IpConfig::Dhcp { device }),
        (None, other) => {
            autoconf_only(device, other).ok_or(format!("autoconf {other:?} needs a client address"))
        }
        (Some(address), "off" | "none" | "") => {
            let prefix = prefix(address, field(3))?;
            let gateway = addr(2, "gateway")?;
            let dns: Vec<IpAddr> = [addr(7, "DNS server")?, addr(8, "DNS server")?]
                .into_iter()
                .flatten()
                .collect();
            let mixed = gateway
                .iter()
                .chain(&dns)
                .any(|a| a.is_ipv4() != address.is_ipv4());
            if mixed {
                return Err(format!(
                    "the gateway and DNS servers must be of {address}'s family"
                ));
            }
            Ok(IpConfig::Static(StaticIp {
                address,
                prefix,
                gateway,
                hostname: non_empty(field(4)),
                device,
                dns,
            }))
        }
        (Some(_), other) => Err(format!(
            "autoconf {other:?} with a client address: use off (static) or leave the address empty"
        )),
    }
}

/// `DEV:dhcp`, `DEV:on`, `DEV:dhcp6`, …
fn autoconf_only(device: Option<String>, word: &str) -> Option<IpConfig> {
    match word {
        "dhcp" => Some(IpConfig::Dhcp { device }),
        "on" | "any" => Some(IpConfig::Any { device }),
        w => v6_mode(w).map(|mode| IpConfig::V6 { device, mode }),
    }
}

/// The prefix length from a netmask field: dotted (IPv4) or a length (both families).
fn prefix(address: IpAddr, m: &str) -> Result<u8, String> {
    let max = if address.is_ipv4() { 32 } else { 128 };
    match m {
        "" => Ok(if address.is_ipv4() { 24 } else { 64 }),
        m if !m.contains('.') => m
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or(format!("netmask {m:?} is invalid")),
        m if address.is_ipv4() => {
            netmask_prefix(m.parse().map_err(|_| format!("netmask {m:?} is invalid"))?)
                .ok_or(format!("netmask {m} is not contiguous"))
        }
        m => Err(format!(
            "netmask {m:?}: an IPv6 address takes a prefix length, e.g. 64"
        )),
    }
}

fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(d: &str) -> Option<String> {
        Some(d.to_string())
    }

    #[test]
    fn ip_forms_of_the_kernel_and_dracut_parse() {
        assert_eq!(parse_ip("dhcp").unwrap(), IpConfig::Dhcp { device: None });
        assert_eq!(parse_ip("any").unwrap(), IpConfig::Any { device: None });
        assert_eq!(
            parse_ip("eth1:dhcp").unwrap(),
            IpConfig::Dhcp {
                device: dev("eth1")
            }
        );
        assert_eq!(
            parse_ip(":::::eth2:dhcp").unwrap(),
            IpConfig::Dhcp {
                device: dev("eth2")
            }
        );
        assert_eq!(parse_ip("off").unwrap(), IpConfig::Off);
        let s =
            parse_ip("192.0.2.10::192.0.2.1:255.255.255.128:web-01:eth0:off:192.0.2.53").unwrap();
        assert_eq!(
            s,
            IpConfig::Static(StaticIp {
                address: "192.0.2.10".parse().unwrap(),
                prefix: 25,
                gateway: Some("192.0.2.1".parse().unwrap()),
                hostname: Some("web-01".into()),
                device: dev("eth0"),
                dns: vec!["192.0.2.53".parse().unwrap()],
            })
        );
    }

    #[test]
    fn dracut_ipv6_words_parse_with_and_without_a_device() {
        for (word, mode) in [
            ("dhcp6", V6Mode::Dhcp6),
            ("auto6", V6Mode::Auto6),
            ("either6", V6Mode::Either6),
        ] {
            assert_eq!(parse_ip(word).unwrap(), IpConfig::V6 { device: None, mode });
            assert_eq!(
                parse_ip(&format!("eth0:{word}")).unwrap(),
                IpConfig::V6 {
                    device: dev("eth0"),
                    mode
                }
            );
            assert_eq!(
                parse_ip(&format!(":::::ens3:{word}")).unwrap(),
                IpConfig::V6 {
                    device: dev("ens3"),
                    mode
                }
            );
        }
    }

    #[test]
    fn static_ipv6_takes_bracketed_addresses_and_a_prefix_length() {
        let s = parse_ip(
            "[2001:db8::10]::[2001:db8::1]:64:web01:eth0:none:[2001:db8::53]:[2001:db8::54]",
        )
        .unwrap();
        assert_eq!(
            s,
            IpConfig::Static(StaticIp {
                address: "2001:db8::10".parse().unwrap(),
                prefix: 64,
                gateway: Some("2001:db8::1".parse().unwrap()),
                hostname: Some("web01".into()),
                device: dev("eth0"),
                dns: vec![
                    "2001:db8::53".parse().unwrap(),
                    "2001:db8::54".parse().unwrap()
                ],
            })
        );
        let IpConfig::Static(s) = parse_ip("[fd00::5]:::::eth1:off").unwrap() else {
            panic!("static")
        };
        assert_eq!((s.prefix, s.gateway), (64, None), "a /64 by default");
        assert_eq!(parse_ip("[fd00::5]::::::off").unwrap(), {
            let mut t = s.clone();
            t.device = None;
            IpConfig::Static(t)
        });
    }

    #[test]
    fn bad_ipv6_values_say_what_is_wrong() {
        let e = parse_ip("[fd00::5]::[fd00::1]:129::eth0:none").unwrap_err();
        assert!(e.contains("129"), "{e}");
        let e = parse_ip("[fd00::5]::[fd00::1]:255.255.255.0::eth0:none").unwrap_err();
        assert!(e.contains("prefix length"), "{e}");
        let e = parse_ip("[fd00::5]::10.0.0.1:64::eth0:none").unwrap_err();
        assert!(e.contains("family"), "{e}");
        let e = parse_ip("[fd00::zz]:::::eth0:none").unwrap_err();
        assert!(e.contains("fd00::zz"), "{e}");
        let e = parse_ip("[fd00::5]:::::eth0:dhcp6").unwrap_err();
        assert!(e.contains("dhcp6"), "{e}");
    }

    #[test]
    fn bad_ipv4_values_name_the_field() {
        assert!(parse_ip("10.0.0.2::10.0.0.1:255.0.255.0::eth0:off")
            .unwrap_err()
            .contains("contiguous"));
    }
}
