//! LLDP (IEEE 802.1AB): which switch and port each NIC is cabled to. A raw `AF_PACKET`
//! socket per NIC with carrier listens for frames of ethertype 0x88cc for a bounded
//! time; [`parse`] reads the chassis ID, port ID, port description and system name TLVs.

use super::nic::Nic;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The LLDP ethertype.
pub const ETHERTYPE: u16 = 0x88cc;
/// The nearest-bridge group address switches send LLDP to.
const NEAREST_BRIDGE: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

/// What a neighbour announced.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
pub struct Neighbor {
    /// Chassis ID (a MAC as `aa:bb:…`, an IP address, or the text sent).
    pub chassis_id: String,
    /// Chassis ID subtype (4 = MAC address, 5 = network address, 7 = locally assigned, …).
    pub chassis_id_subtype: u8,
    /// Port ID (an interface name such as `Ethernet1/12`, or a MAC).
    pub port_id: String,
    /// Port ID subtype (3 = MAC address, 5 = interface name, 7 = locally assigned, …).
    pub port_id_subtype: u8,
    /// Port description TLV, when sent.
    pub port_description: Option<String>,
    /// System name TLV, when sent.
    pub system_name: Option<String>,
}

/// Why a frame is not a usable LLDPDU.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the frame is not LLDP (ethertype {0:#06x})")]
    NotLldp(u16),
    #[error("a TLV runs past the end of the frame")]
    Truncated,
    #[error("the mandatory {0} TLV is missing or empty")]
    Missing(&'static str),
}

/// Parses an Ethernet frame (destination, source, ethertype, then the LLDPDU).
pub fn parse(frame: &[u8]) -> Result<Neighbor, ParseError> {
    let ethertype = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return Err(ParseError::Truncated),
    };
    if ethertype != ETHERTYPE {
        return Err(ParseError::NotLldp(ethertype));
    }
    let mut rest = &frame[14..];
    let (mut chassis, mut port) = (None, None);
    let mut n = Neighbor::default();
    while rest.len() >= 2 {
        let head = u16::from_be_bytes([rest[0], rest[1]]);
        let (kind, len) = (head >> 9, usize::from(head & 0x1ff));
        let value = rest.get(2..2 + len).ok_or(ParseError::Truncated)?;
        rest = &rest[2 + len..];
        match kind {
            0 => break,
            1 => chassis = id(value),
            2 => port = id(value),
            4 => n.port_description = text(value),
            5 => n.system_name = text(value),
            _ => {}
        }
    }
    (n.chassis_id_subtype, n.chassis_id) = chassis.ok_or(ParseError::Missing("chassis ID"))?;
    (n.port_id_subtype, n.port_id) = port.ok_or(ParseError::Missing("port ID"))?;
    Ok(n)
}

/// A chassis or port ID TLV: subtype, then the ID rendered by its subtype.
fn id(value: &[u8]) -> Option<(u8, String)> {
    let (&subtype, body) = value.split_first()?;
    if body.is_empty() {
        return None;
    }
    // Chassis subtype 4 and port subtype 3 are MAC addresses.
    let rendered = if body.len() == 6 && matches!(subtype, 3 | 4) {
        hex_mac(body)
    } else if subtype == 5 && body.len() == 5 && body[0] == 1 {
        // Network address: IANA family 1 (IPv4) then the address.
        std::net::Ipv4Addr::new(body[1], body[2], body[3], body[4]).to_string()
    } else {
        String::from_utf8_lossy(body).trim().to_string()
    };
    Some((subtype, rendered))
}

fn text(value: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(value).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn hex_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Listens on every NIC with carrier at once, for at most `wait`, and fills in
/// [`Nic::lldp`] for those that heard a neighbour.
pub fn annotate(nics: &mut [Nic], wait: Duration) {
    let heard: Vec<Option<Neighbor>> = std::thread::scope(|s| {
        let handles: Vec<_> = nics
            .iter()
            .map(|nic| {
                let listen = nic.carrier == Some(true);
                let name = nic.name.clone();
                s.spawn(move || listen.then(|| listen_on(&name, wait)).flatten())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    for (nic, n) in nics.iter_mut().zip(heard) {
        nic.lldp = n;
    }
}

/// The first LLDP neighbour heard on `ifname` within `wait`; `None` on silence or when
/// the socket cannot be opened (not root, no such interface).
pub fn listen_on(ifname: &str, wait: Duration) -> Option<Neighbor> {
    let sock = match socket::PacketSocket::open(ifname, ETHERTYPE, NEAREST_BRIDGE) {
        Ok(s) => s,
        Err(e) => {
            crate::runner::log::debug(&format!("lldp: listening on {ifname}: {e}"));
            return None;
        }
    };
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 1600];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let Ok(n) = sock.recv(&mut buf, left) else {
            return None;
        };
        if let Ok(neighbor) = parse(&buf[..n]) {
            return Some(neighbor);
        }
    }
}

mod socket {
    //! The raw packet socket, behind a safe wrapper.
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    /// An `AF_PACKET` socket bound to one interface and ethertype.
    pub struct PacketSocket(OwnedFd);

    impl PacketSocket {
        /// Opens, joins `group` (switches send LLDP to a multicast address a NIC filters
        /// out otherwise) and binds to `ifname`.
        pub fn open(ifname: &str, ethertype: u16, group: [u8; 6]) -> io::Result<PacketSocket> {
            let cname = std::ffi::CString::new(ifname)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
            // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
            let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            if index == 0 {
                return Err(io::Error::last_os_error());
            }
            let proto = ethertype.to_be();
            // SAFETY: plain socket(2) call; the descriptor is owned right below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor nobody else owns.
            let sock = PacketSocket(unsafe { OwnedFd::from_raw_fd(fd) });
            let ifindex = i32::try_from(index)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
            // SAFETY: all-zero is a valid sockaddr_ll and packet_mreq.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = ifindex;
            // SAFETY: as above.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex;
            mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
            mreq.mr_alen = 6;
            mreq.mr_address[..6].copy_from_slice(&group);
            // SAFETY: the pointers and lengths describe the local structs above.
            let rc = unsafe {
                libc::setsockopt(
                    sock.0.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    std::ptr::from_ref(&mreq).cast(),
                    std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above, for bind(2).
            let rc = unsafe {
                libc::bind(
                    sock.0.as_raw_fd(),
                    std::ptr::from_ref(&addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(sock)
        }

        /// One frame into `buf`, waiting at most `wait`.
        pub fn recv(&self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
            let ms = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            if rc == 0 {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let head = (kind << 9) | u16::try_from(value.len()).unwrap();
        let mut v = head.to_be_bytes().to_vec();
        v.extend_from_slice(value);
        v
    }

    fn frame(tlvs: &[Vec<u8>]) -> Vec<u8> {
        let mut f = NEAREST_BRIDGE.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ETHERTYPE.to_be_bytes());
        for t in tlvs {
            f.extend_from_slice(t);
        }
        f
    }

    #[test]
    fn a_switch_frame_gives_chassis_port_and_names() {
        let f = frame(&[
            tlv(1, &[4, 0x00, 0x1c, 0x73, 0xaa, 0xbb, 0xcc]),
            tlv(2, b"\x05Ethernet1/12"),
            tlv(3, &[0, 120]),
            tlv(4, b"server web-01 eno1"),
            tlv(5, b"leaf-3.dc1"),
            tlv(0, &[]),
            // After End: ignored.
            tlv(5, b"ignored"),
        ]);
        assert_eq!(
            parse(&f).unwrap(),
            Neighbor {
                chassis_id: "00:1c:73:aa:bb:cc".into(),
                chassis_id_subtype: 4,
                port_id: "Ethernet1/12".into(),
                port_id_subtype: 5,
                port_description: Some("server web-01 eno1".into()),
                system_name: Some("leaf-3.dc1".into()),
            }
        );
    }

    #[test]
    fn mac_port_ids_and_network_address_chassis_ids() {
        let f = frame(&[
            tlv(1, &[5, 1, 10, 0, 0, 1]),
            tlv(2, &[3, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
        ]);
        let n = parse(&f).unwrap();
        assert_eq!(
            (n.chassis_id.as_str(), n.port_id.as_str()),
            ("10.0.0.1", "aa:bb:cc:dd:ee:ff")
        );
        assert_eq!((n.port_description, n.system_name), (None, None));
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        let mut other = frame(&[tlv(1, &[4, 1, 2, 3, 4, 5, 6])]);
        other[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(parse(&other), Err(ParseError::NotLldp(0x0800)));
        assert_eq!(parse(&[0u8; 10]), Err(ParseError::Truncated));
        let mut cut = frame(&[tlv(1, &[4, 1, 2, 3, 4, 5, 6])]);
        cut.truncate(cut.len() - 2);
        assert_eq!(parse(&cut), Err(ParseError::Truncated));
        let no_port = frame(&[tlv(1, &[4, 1, 2, 3, 4, 5, 6]), tlv(0, &[])]);
        assert_eq!(parse(&no_port), Err(ParseError::Missing("port ID")));
        let empty_id = frame(&[tlv(1, &[4]), tlv(2, b"\x05p1")]);
        assert_eq!(parse(&empty_id), Err(ParseError::Missing("chassis ID")));
    }

    #[test]
    fn listening_on_a_missing_interface_hears_nothing_at_once() {
        let start = Instant::now();
        assert_eq!(listen_on("no-such-nic0", Duration::from_secs(5)), None);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
