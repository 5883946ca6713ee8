//! The DHCPv6 exchanges on one link (RFC 8415 §18): stateful Solicit → Advertise →
//! Request → Reply, and stateless Information-request → Reply, with the RFC's
//! retransmission (§15) bounded by a deadline. No renewal: the ramdisk lives for
//! minutes and leases for an hour or more.

use super::dhcp6::{self, Dhcp6Error, IaAddr, Incoming, Outgoing};
use super::sock::{all_dhcp_servers, dhcp6_socket, Link};
use crate::runner::log;
use std::net::{Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};

/// What DHCPv6 gave.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    /// The IA_NA address (stateful only).
    pub address: Option<IaAddr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

/// Why DHCPv6 gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{dev}: opening the DHCPv6 socket: {source}")]
    Socket { dev: String, source: std::io::Error },
    #[error("{dev}: no DHCPv6 server answered the {what} within {secs} s")]
    NoAnswer {
        dev: String,
        what: &'static str,
        secs: u64,
    },
    #[error("{dev}: the DHCPv6 server refused: status {status} {text}")]
    Refused {
        dev: String,
        status: u16,
        text: String,
    },
}

/// Retransmission parameters (RFC 8415 §7.6 and §15).
#[derive(Debug, Clone, Copy)]
pub struct Retrans {
    pub irt: Duration,
    pub mrt: Duration,
    /// Maximum transmissions; 0 = until the deadline.
    pub mrc: u32,
}

pub const SOLICIT: Retrans = Retrans {
    irt: Duration::from_secs(1),
    mrt: Duration::from_secs(3600),
    mrc: 0,
};
pub const REQUEST: Retrans = Retrans {
    irt: Duration::from_secs(1),
    mrt: Duration::from_secs(30),
    mrc: 10,
};
pub const INFORMATION: Retrans = Retrans {
    irt: Duration::from_secs(1),
    mrt: Duration::from_secs(3600),
    mrc: 0,
};

/// A factor in [-0.1, 0.1] (§15 RAND), or (0, 0.1] when `positive` (the first Solicit).
fn rand_factor(positive: bool) -> f64 {
    let r = getrandom::u32().unwrap_or(0x8000_0000) as f64 / u32::MAX as f64;
    if positive {
        0.001 + r * 0.099
    } else {
        r * 0.2 - 0.1
    }
}

/// The next retransmission timeout: RT = IRT + RAND*IRT first, then 2*RTprev +
/// RAND*RTprev, and MRT + RAND*MRT once past MRT.
pub fn next_rt(prev: Option<Duration>, p: Retrans, rand: f64) -> Duration {
    let rt = match prev {
        None => p.irt.as_secs_f64() * (1.0 + rand),
        Some(prev) => prev.as_secs_f64() * (2.0 + rand),
    };
    let mrt = p.mrt.as_secs_f64();
    Duration::from_secs_f64(if rt > mrt { mrt * (1.0 + rand) } else { rt })
}

/// One client on one link.
struct Client<'a> {
    link: &'a Link,
    sock: UdpSocket,
    duid: Vec<u8>,
}

impl Client<'_> {
    fn open(link: &Link) -> Result<Client<'_>, ClientError> {
        let sock = dhcp6_socket(link).map_err(|source| ClientError::Socket {
            dev: link.name.clone(),
            source,
        })?;
        Ok(Client {
            link,
            sock,
            duid: dhcp6::duid_ll(link.mac),
        })
    }

    /// Sends what `build` makes (given the elapsed time) until `pick` takes an answer of
    /// type `want`, retransmitting as `p` says, until `deadline`. `pick` sees every
    /// valid answer and the end of each timeout (with `None`), and returns one to stop.
    fn exchange(
        &self,
        what: &'static str,
        want: u8,
        p: Retrans,
        deadline: Instant,
        build: &dyn Fn([u8; 3], u16) -> Vec<u8>,
        pick: &mut dyn FnMut(Option<Incoming>) -> Option<Incoming>,
    ) -> Result<Incoming, ClientError> {
        let mut xid = [0u8; 3];
        let _ = getrandom::fill(&mut xid);
        let start = Instant::now();
        let to = all_dhcp_servers(self.link);
        let (mut rt, mut sent) = (None, 0u32);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline && (p.mrc == 0 || sent < p.mrc) {
            let this_rt = next_rt(rt, p, rand_factor(rt.is_none() && what == "Solicit"));
            rt = Some(this_rt);
            let elapsed = (start.elapsed().as_millis() / 10).min(0xffff) as u16;
            if let Err(e) = self.sock.send_to(&build(xid, elapsed), to) {
                log::debug(&format!(
                    "{}: sending the DHCPv6 {what}: {e}",
                    self.link.name
                ));
            }
            sent += 1;
            let until = (Instant::now() + this_rt).min(deadline);
            while let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            {
                let _ = self.sock.set_read_timeout(Some(left));
                let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                    break;
                };
                match dhcp6::accept(&buf[..n], want, xid, &self.duid) {
                    Ok(m) => {
                        if let Some(m) = pick(Some(m)) {
                            return Ok(m);
                        }
                    }
                    Err(e @ Dhcp6Error::NoServerId) => log::warn(&format!(
                        "{}: DHCPv6 answer from {from}: {e}",
                        self.link.name
                    )),
                    Err(e) => log::debug(&format!("{}: DHCPv6 from {from}: {e}", self.link.name)),
                }
            }
            if let Some(m) = pick(None) {
                return Ok(m);
            }
        }
        Err(ClientError::NoAnswer {
            dev: self.link.name.clone(),
            what,
            secs: start.elapsed().as_secs(),
        })
    }

    fn message(&self, t: u8, xid: [u8; 3], cs: u16, ia: bool, adv: Option<&Incoming>) -> Vec<u8> {
        dhcp6::encode(&Outgoing {
            msg_type: t,
            xid,
            client_id: &self.duid,
            elapsed_cs: cs,
            ia_na: ia,
            server_id: adv.and_then(|a| a.server_id.as_deref()),
            address: adv.and_then(|a| a.addresses.first()),
        })
    }
}

/// Stateful DHCPv6: an address (IA_NA) plus DNS and search list.
pub fn stateful(link: &Link, deadline: Instant) -> Result<Lease, ClientError> {
    let c = Client::open(link)?;
    // Collect Advertises during the first timeout and take the most preferred; after it,
    // the first one (§18.2.1). Preference 255 ends the wait at once.
    let mut best: Option<Incoming> = None;
    let adv = c.exchange(
        "Solicit",
        dhcp6::ADVERTISE,
        SOLICIT,
        deadline,
        &|xid, cs| c.message(dhcp6::SOLICIT, xid, cs, true, None),
        &mut |m| match m {
            Some(m) if m.addresses.is_empty() => {
                log::debug(&format!(
                    "{}: an Advertise without addresses: {}",
                    link.name, m.status_text
                ));
                None
            }
            Some(m) if m.preference == 255 => Some(m),
            Some(m) => {
                if best.as_ref().is_none_or(|b| m.preference > b.preference) {
                    best = Some(m);
                }
                None
            }
            None => best.take(),
        },
    )?;
    let reply = c.exchange(
        "Request",
        dhcp6::REPLY,
        REQUEST,
        deadline,
        &|xid, cs| c.message(dhcp6::REQUEST, xid, cs, true, Some(&adv)),
        &mut |m| m,
    )?;
    let address = reply.addresses.first().cloned();
    if reply.status != 0 || address.is_none() {
        return Err(ClientError::Refused {
            dev: link.name.clone(),
            status: reply.ia_status.unwrap_or(reply.status),
            text: reply.status_text,
        });
    }
    Ok(Lease {
        address,
        dns: reply.dns,
        search: reply.search,
    })
}

/// Stateless DHCPv6 (Information-request): DNS and search list only.
pub fn stateless(link: &Link, deadline: Instant) -> Result<Lease, ClientError> {
    let c = Client::open(link)?;
    let reply = c.exchange(
        "Information-request",
        dhcp6::REPLY,
        INFORMATION,
        deadline,
        &|xid, cs| c.message(dhcp6::INFORMATION_REQUEST, xid, cs, false, None),
        &mut |m| m,
    )?;
    Ok(Lease {
        address: None,
        dns: reply.dns,
        search: reply.search,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_doubles_and_is_capped() {
        let p = REQUEST;
        let first = next_rt(None, p, 0.0);
        assert_eq!(first, Duration::from_secs(1));
        let second = next_rt(Some(first), p, 0.0);
        assert_eq!(second, Duration::from_secs(2));
        assert_eq!(
            next_rt(Some(Duration::from_secs(20)), p, 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_rt(Some(Duration::from_secs(20)), p, 0.1),
            Duration::from_secs(33)
        );
        assert!(next_rt(None, SOLICIT, rand_factor(true)) > Duration::from_secs(1));
        for _ in 0..100 {
            let r = rand_factor(false);
            assert!((-0.1..=0.1).contains(&r), "{r}");
        }
    }
}
