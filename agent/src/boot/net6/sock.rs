//! The two sockets IPv6 configuration needs, bound to one interface: a raw ICMPv6
//! socket for router solicitations and advertisements, and the DHCPv6 client's UDP
//! socket on port 546. Everything goes through nix's safe wrappers.

use nix::sys::socket::{
    bind, recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrIn6,
};
use nix::sys::time::TimeVal;
use std::ffi::OsString;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// What a link is to IPv6 configuration.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Link {
    /// Reads the link's index and MAC from sysfs.
    pub fn new(name: &str) -> std::io::Result<Link> {
        let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}"));
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let index = sys("ifindex")?
            .trim()
            .parse()
            .map_err(|_| bad("ifindex is not a number"))?;
        let mut mac = [0u8; 6];
        let text = sys("address")?;
        let bytes: Vec<u8> = text
            .trim()
            .split(':')
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        if bytes.len() != 6 {
            return Err(bad("the link has no Ethernet address"));
        }
        mac.copy_from_slice(&bytes);
        Ok(Link {
            name: name.to_string(),
            index,
            mac,
        })
    }
}

fn io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

fn bound_socket(
    link: &Link,
    ty: SockType,
    proto: Option<SockProtocol>,
) -> std::io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet6, ty, SockFlag::SOCK_CLOEXEC, proto).map_err(io)?;
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(&link.name)).map_err(io)?;
    Ok(fd)
}

/// A raw ICMPv6 socket on one link: sends router solicitations, receives every ICMPv6
/// message arriving there (the kernel still does its own ND processing).
pub struct IcmpSocket {
    fd: OwnedFd,
    index: u32,
}

impl IcmpSocket {
    /// Opens it; ND messages must leave with hop limit 255 (RFC 4861 §6.1.2).
    pub fn open(link: &Link) -> std::io::Result<IcmpSocket> {
        let fd = bound_socket(link, SockType::Raw, Some(SockProtocol::IcmpV6))?;
        setsockopt(&fd, sockopt::Ipv6MulticastHops, &255).map_err(io)?;
        Ok(IcmpSocket {
            fd,
            index: link.index,
        })
    }

    /// Sends `msg` to all routers (ff02::2) on the link.
    pub fn send_all_routers(&self, msg: &[u8]) -> std::io::Result<()> {
        let to = SockaddrIn6::from(SocketAddrV6::new(
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2),
            0,
            0,
            self.index,
        ));
        sendto(self.fd.as_raw_fd(), msg, &to, MsgFlags::empty()).map_err(io)?;
        Ok(())
    }

    /// Receives one message within `wait`: (bytes, source), `None` on timeout.
    pub fn recv(
        &self,
        buf: &mut [u8],
        wait: Duration,
    ) -> std::io::Result<Option<(usize, Ipv6Addr)>> {
        let wait = wait.max(Duration::from_millis(10));
        let tv = TimeVal::new(wait.as_secs() as _, wait.subsec_micros() as _);
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv).map_err(io)?;
        match recvfrom::<SockaddrIn6>(self.fd.as_raw_fd(), buf) {
            Ok((n, from)) => Ok(Some((
                n,
                from.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED),
            ))),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

/// The DHCPv6 client port.
pub const CLIENT_PORT: u16 = 546;
/// The DHCPv6 server and relay port.
pub const SERVER_PORT: u16 = 547;

/// A UDP socket on `[::]:546` bound to the link (several links may each have one).
pub fn dhcp6_socket(link: &Link) -> std::io::Result<UdpSocket> {
    let fd = bound_socket(link, SockType::Datagram, Some(SockProtocol::Udp))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io)?;
    let any = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT, 0, 0));
    bind(fd.as_raw_fd(), &any).map_err(io)?;
    Ok(UdpSocket::from(fd))
}

/// All_DHCP_Relay_Agents_and_Servers (ff02::1:2) on the link.
pub fn all_dhcp_servers(link: &Link) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2),
        SERVER_PORT,
        0,
        link.index,
    )
}
