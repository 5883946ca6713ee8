//! DHCPv6 messages (RFC 8415): the few a ramdisk client sends (Solicit, Request,
//! Information-request) and what it reads back (Advertise, Reply). Sans-I/O: bytes in,
//! bytes out; [`super::dhcp6_client`] does the exchange.

use std::net::Ipv6Addr;

pub const SOLICIT: u8 = 1;
pub const ADVERTISE: u8 = 2;
pub const REQUEST: u8 = 3;
pub const REPLY: u8 = 7;
pub const INFORMATION_REQUEST: u8 = 11;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_PREFERENCE: u16 = 7;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;

/// The IAID of the one IA_NA a client asks for (one per interface is enough here).
pub const IAID: u32 = 1;

/// DUID-LL (type 3, hardware type 1 = Ethernet) from the NIC's MAC, so a server can map
/// the host by the address printed on its label.
pub fn duid_ll(mac: [u8; 6]) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac);
    d
}

/// An address leased in an IA_NA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddr {
    pub addr: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
}

/// What a client builds a message from.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub msg_type: u8,
    pub xid: [u8; 3],
    pub client_id: &'a [u8],
    /// Hundredths of a second since the exchange began (capped at 0xffff).
    pub elapsed_cs: u16,
    /// Solicit and Request carry an IA_NA; a Request names the server and the address.
    pub ia_na: bool,
    pub server_id: Option<&'a [u8]>,
    pub address: Option<&'a IaAddr>,
}

fn put_opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    // Every option built here is far below 64 KiB.
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Encodes a client message.
pub fn encode(m: &Outgoing) -> Vec<u8> {
    let mut out = vec![m.msg_type, m.xid[0], m.xid[1], m.xid[2]];
    put_opt(&mut out, OPT_CLIENTID, m.client_id);
    if let Some(s) = m.server_id {
        put_opt(&mut out, OPT_SERVERID, s);
    }
    put_opt(&mut out, OPT_ELAPSED_TIME, &m.elapsed_cs.to_be_bytes());
    let oro: Vec<u8> = [OPT_DNS_SERVERS, OPT_DOMAIN_LIST]
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    put_opt(&mut out, OPT_ORO, &oro);
    if m.ia_na {
        // IAID, T1 = T2 = 0: the server chooses.
        let mut ia = IAID.to_be_bytes().to_vec();
        ia.extend_from_slice(&[0; 8]);
        if let Some(a) = m.address {
            let mut d = a.addr.octets().to_vec();
            d.extend_from_slice(&a.preferred.to_be_bytes());
            d.extend_from_slice(&a.valid.to_be_bytes());
            put_opt(&mut ia, OPT_IAADDR, &d);
        }
        put_opt(&mut out, OPT_IA_NA, &ia);
    }
    out
}

/// A server message, as far as the client uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub msg_type: u8,
    pub xid: [u8; 3],
    pub client_id: Option<Vec<u8>>,
    pub server_id: Option<Vec<u8>>,
    pub preference: u8,
    /// The top-level status (0 Success when absent).
    pub status: u16,
    pub status_text: String,
    /// The IA_NA's status (e.g. 2 NoAddrsAvail), when it has one.
    pub ia_status: Option<u16>,
    pub addresses: Vec<IaAddr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dhcp6Error {
    #[error("truncated DHCPv6 message")]
    Truncated,
    #[error("no Server ID in the reply (RFC 8415 §16: ignored)")]
    NoServerId,
    #[error("the reply is for another client or transaction")]
    NotOurs,
    #[error("message type {0} was not expected")]
    UnexpectedType(u8),
}

/// Iterates the options of `data`: (code, body). Stops at a truncated option.
fn options(data: &[u8]) -> Result<Vec<(u16, &[u8])>, Dhcp6Error> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (Some(code), Some(len)) = (be16(rest, 0), be16(rest, 2)) else {
            return Err(Dhcp6Error::Truncated);
        };
        let body = rest.get(4..4 + len as usize).ok_or(Dhcp6Error::Truncated)?;
        out.push((code, body));
        rest = &rest[4 + len as usize..];
    }
    Ok(out)
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn addr_at(d: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = d.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Decodes a server message without judging it (see [`accept`]).
pub fn decode(data: &[u8]) -> Result<Incoming, Dhcp6Error> {
    let head = data.get(..4).ok_or(Dhcp6Error::Truncated)?;
    let mut m = Incoming {
        msg_type: head[0],
        xid: [head[1], head[2], head[3]],
        ..Default::default()
    };
    for (code, body) in options(&data[4..])? {
        match code {
            OPT_CLIENTID => m.client_id = Some(body.to_vec()),
            OPT_SERVERID => m.server_id = Some(body.to_vec()),
            OPT_PREFERENCE => m.preference = body.first().copied().unwrap_or(0),
            OPT_STATUS_CODE => {
                m.status = be16(body, 0).ok_or(Dhcp6Error::Truncated)?;
                m.status_text = String::from_utf8_lossy(&body[2..]).into_owned();
            }
            OPT_IA_NA => decode_ia_na(body, &mut m)?,
            OPT_DNS_SERVERS => {
                m.dns = body
                    .chunks_exact(16)
                    .filter_map(|c| addr_at(c, 0))
                    .collect()
            }
            OPT_DOMAIN_LIST => m.search = domain_names(body),
            _ => {}
        }
    }
    Ok(m)
}

fn decode_ia_na(body: &[u8], m: &mut Incoming) -> Result<(), Dhcp6Error> {
    if be32(body, 0) != Some(IAID) {
        return Ok(());
    }
    for (code, o) in options(body.get(12..).ok_or(Dhcp6Error::Truncated)?)? {
        match code {
            OPT_IAADDR => {
                let (Some(addr), Some(preferred), Some(valid)) =
                    (addr_at(o, 0), be32(o, 16), be32(o, 20))
                else {
                    return Err(Dhcp6Error::Truncated);
                };
                // An address the server withdraws (valid 0) is not a lease.
                if valid > 0 {
                    m.addresses.push(IaAddr {
                        addr,
                        preferred,
                        valid,
                    });
                }
            }
            OPT_STATUS_CODE => m.ia_status = be16(o, 0),
            _ => {}
        }
    }
    Ok(())
}

/// Domain names in DNS wire format, uncompressed (RFC 8415 §10; RFC 8106 DNSSL too).
/// Zero padding after the last name is skipped; a malformed name ends the list.
pub fn domain_names(mut d: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    while let Some((&len, rest)) = d.split_first() {
        if len == 0 {
            if !labels.is_empty() {
                out.push(labels.join("."));
                labels.clear();
            }
            d = rest;
            continue;
        }
        let Some(label) = rest.get(..len as usize).filter(|_| len < 64) else {
            break;
        };
        labels.push(String::from_utf8_lossy(label).into_owned());
        d = &rest[len as usize..];
    }
    out
}

/// Decodes `data` and checks it answers `xid` for `client_id` with type `want`, and that
/// it carries a Server ID, which RFC 8415 requires of Advertise and Reply.
pub fn accept(
    data: &[u8],
    want: u8,
    xid: [u8; 3],
    client_id: &[u8],
) -> Result<Incoming, Dhcp6Error> {
    let m = decode(data)?;
    if m.msg_type != want {
        return Err(Dhcp6Error::UnexpectedType(m.msg_type));
    }
    if m.xid != xid || m.client_id.as_deref() != Some(client_id) {
        return Err(Dhcp6Error::NotOurs);
    }
    if m.server_id.is_none() {
        return Err(Dhcp6Error::NoServerId);
    }
    Ok(m)
}

#[cfg(test)]
#[path = "dhcp6_tests.rs"]
mod tests;
