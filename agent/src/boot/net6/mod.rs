//! IPv6 on one link, in the ramdisk: ask the router (an RS on a raw ICMPv6 socket, the
//! RA's M/O flags, prefixes and RDNSS/DNSSL), run DHCPv6 when it or `ip=` says so, and
//! wait — bounded — until the kernel has a usable address (past DAD, global or site
//! scope) and a default route. The kernel itself does SLAAC and installs the routes
//! (`accept_ra=1`, `autoconf=1`, its defaults).
//!
//! The M/O flags come from a raw socket rather than netlink: `RTM_NEWNDUSEROPT` carries
//! only the options (RDNSS, DNSSL), not the RA header, and nothing in `/proc/sys`
//! exposes the flags. One RS answered by one RA gives everything at once.

pub mod dhcp6;
pub mod dhcp6_client;
pub mod inet6;
pub mod ra;
pub mod sock;

use super::ip_arg::V6Mode;
use crate::runner::{self, log};
use inet6::Readiness;
use ra::RouterAdvert;
use sock::{IcmpSocket, Link};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// RTR_SOLICITATION_INTERVAL (RFC 4861 §10).
const RS_INTERVAL: Duration = Duration::from_secs(4);

/// What IPv6 configuration reached on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Config {
    pub dev: String,
    pub addr: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Ipv6Addr,
    /// `slaac` or `dhcp6`.
    pub how: &'static str,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl V6Config {
    /// The console line, like DHCPv4's: `eth0 fd42:9::5054:ff:fe12:3456/64 via fe80::2 (slaac)`.
    pub fn summary(&self) -> String {
        format!(
            "{} {}/{} via {} ({})",
            self.dev, self.addr, self.prefix, self.gateway, self.how
        )
    }
}

/// Why IPv6 is not usable on a link.
#[derive(Debug, thiserror::Error)]
pub enum Net6Error {
    #[error("{0}: {1}")]
    Link(String, std::io::Error),
    #[error("{0}: no IPv6 router answered within {1} s (does a router, radvd or dnsmasq send router advertisements there? imprint.net6_timeout= waits longer)")]
    NoRouter(String, u64),
    #[error(transparent)]
    Dhcp6(#[from] dhcp6_client::ClientError),
    #[error("{0}: no usable IPv6 address within {1} s ({2}; does the router's prefix allow SLAAC, or does a DHCPv6 server answer?)")]
    NotReady(String, u64, &'static str),
    #[error("{0}: duplicate address detection failed for {1}: another host on the link uses it")]
    DadFailed(String, Ipv6Addr),
    #[error("{0}: adding {1}: {2}")]
    Apply(String, String, runner::RunError),
}

/// Sends router solicitations every 4 s and returns the first router advertisement
/// from a link-local router, or `None` at `deadline`.
pub fn solicit_router(link: &Link, deadline: Instant) -> Result<Option<RouterAdvert>, Net6Error> {
    let sock = IcmpSocket::open(link).map_err(|e| Net6Error::Link(link.name.clone(), e))?;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if let Err(e) = sock.send_all_routers(&ra::solicitation()) {
            // Before link-local DAD ends the kernel may refuse; the next round works.
            log::debug(&format!("{}: router solicitation: {e}", link.name));
        }
        let round = (Instant::now() + RS_INTERVAL).min(deadline);
        while let Some(left) = round.checked_duration_since(Instant::now()) {
            let got = sock
                .recv(&mut buf, left)
                .map_err(|e| Net6Error::Link(link.name.clone(), e))?;
            let Some((n, from)) = got else { break };
            if !from.is_unicast_link_local() {
                continue;
            }
            if let Some(ra) = ra::parse(&buf[..n]) {
                log::debug(&format!(
                    "{}: router advertisement from {from}: {ra:?}",
                    link.name
                ));
                return Ok(Some(ra));
            }
        }
    }
    Ok(None)
}

/// Waits until `dev` has a usable address and a default route, or `deadline`.
pub fn wait_ready(
    dev: &str,
    deadline: Instant,
    started: Instant,
) -> Result<(Ipv6Addr, u8, Ipv6Addr), Net6Error> {
    loop {
        let why = match inet6::current(dev) {
            Readiness::Ready {
                addr,
                prefix,
                gateway,
            } => return Ok((addr, prefix, gateway)),
            Readiness::DadFailed(a) => return Err(Net6Error::DadFailed(dev.to_string(), a)),
            Readiness::Waiting(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(Net6Error::NotReady(
                dev.to_string(),
                started.elapsed().as_secs(),
                why,
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether stateful DHCPv6 runs before the wait: `ip=dhcp6` always, the default when
/// the router sets M, `ip=either6` when no prefix allows SLAAC, `ip=auto6` never.
pub fn wants_stateful(mode: V6Mode, ra: &RouterAdvert) -> bool {
    match mode {
        V6Mode::Dhcp6 => true,
        V6Mode::Ra => ra.managed,
        V6Mode::Auto6 => false,
        V6Mode::Either6 => !ra.slaac(),
    }
}

/// Drops repeated entries (the RA and DHCPv6 often name the same server), keeping order.
fn uniq<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::new();
    v.retain(|x| {
        let new = !seen.contains(x);
        if new {
            seen.push(x.clone());
        }
        new
    });
}

fn add_address(dev: &str, a: Ipv6Addr) -> Result<(), Net6Error> {
    // /128: DHCPv6 carries no prefix length; the on-link prefix comes from the RA.
    let cidr = format!("{a}/128");
    runner::run(
        "ip",
        ["-6", "addr", "add", &cidr, "dev", dev],
        Duration::from_secs(10),
    )
    .map(|_| ())
    .map_err(|e| Net6Error::Apply(dev.to_string(), cidr, e))
}

/// Configures IPv6 on `dev` as `mode` says, within `timeout`.
pub fn configure(dev: &str, mode: V6Mode, timeout: Duration) -> Result<V6Config, Net6Error> {
    let started = Instant::now();
    let deadline = started + timeout;
    let link = Link::new(dev).map_err(|e| Net6Error::Link(dev.to_string(), e))?;
    let ra = solicit_router(&link, deadline)?
        .ok_or(Net6Error::NoRouter(dev.to_string(), timeout.as_secs()))?;
    let (mut dns, mut search) = (ra.dns.clone(), ra.search.clone());
    let stateful = wants_stateful(mode, &ra);
    let mut how = "slaac";
    if stateful {
        match dhcp6_client::stateful(&link, deadline) {
            Ok(lease) => {
                if let Some(a) = &lease.address {
                    add_address(dev, a.addr)?;
                    how = "dhcp6";
                }
                dns.extend(lease.dns);
                search.extend(lease.search);
            }
            // The router also offered SLAAC: carry on with that address.
            Err(e) if ra.slaac() && mode == V6Mode::Ra => {
                log::warn(&format!("{e}; continuing with the SLAAC address"))
            }
            Err(e) => return Err(e.into()),
        }
    } else if ra.other {
        match dhcp6_client::stateless(&link, deadline) {
            Ok(lease) => {
                dns.extend(lease.dns);
                search.extend(lease.search);
            }
            Err(e) => log::warn(&format!("{e}; continuing without its DNS servers")),
        }
    }
    let (addr, prefix, gateway) = match wait_ready(dev, deadline, started) {
        Err(e) if mode == V6Mode::Either6 && !stateful => {
            log::warn(&format!("{e}; trying DHCPv6 (ip=either6)"));
            let lease = dhcp6_client::stateful(&link, started + timeout * 2)?;
            if let Some(a) = &lease.address {
                add_address(dev, a.addr)?;
            }
            how = "dhcp6";
            dns.extend(lease.dns);
            search.extend(lease.search);
            wait_ready(dev, started + timeout * 2, started)?
        }
        r => r?,
    };
    uniq(&mut dns);
    uniq(&mut search);
    Ok(V6Config {
        dev: dev.to_string(),
        addr,
        prefix,
        gateway,
        how,
        dns,
        search,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_and_the_routers_flags_decide_on_stateful_dhcpv6() {
        let slaac = RouterAdvert {
            prefixes: vec![ra::Prefix {
                prefix: "fd42:9::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: true,
            }],
            ..Default::default()
        };
        let managed = RouterAdvert {
            managed: true,
            other: true,
            ..Default::default()
        };
        use V6Mode::*;
        for (mode, on_slaac, on_managed) in [
            (Ra, false, true),
            (Dhcp6, true, true),
            (Auto6, false, false),
            (Either6, false, true),
        ] {
            assert_eq!(wants_stateful(mode, &slaac), on_slaac, "{mode:?} on SLAAC");
            assert_eq!(wants_stateful(mode, &managed), on_managed, "{mode:?} on M");
        }
    }

    #[test]
    fn repeated_servers_are_dropped_in_order() {
        let mut v = vec!["b", "a", "b", "c", "a"];
        uniq(&mut v);
        assert_eq!(v, ["b", "a", "c"]);
    }
}
