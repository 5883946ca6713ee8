//! Where TPM commands go: the kernel's character device (`/dev/tpmrm0`, `/dev/tpm0`) or,
//! for tests, swtpm's TCP data channel. Both carry the raw TPM 2.0 command/response bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// Something that carries one TPM command and brings back its response.
pub trait Transport {
    /// Sends a complete command, returns the complete response.
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;
    /// Where the commands go, for messages.
    fn describe(&self) -> String;
}

/// Which TPM to talk to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TpmLocation {
    /// `/dev/tpmrm0` (kernel resource manager), else `/dev/tpm0`.
    #[default]
    Auto,
    /// A TPM character device.
    Device(PathBuf),
    /// swtpm's TCP server (`swtpm socket --server type=tcp`, started with `startup-clear`).
    Tcp(SocketAddr),
}

/// Why no TPM could be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "no TPM at {tried}: {reason}; check that the machine has a TPM 2.0 enabled in the firmware"
)]
pub struct NoTpm {
    pub tried: String,
    pub reason: String,
}

/// Opens the transport for `loc`.
pub fn open(loc: &TpmLocation) -> Result<Box<dyn Transport>, NoTpm> {
    match loc {
        TpmLocation::Auto => {
            let candidates = [PathBuf::from("/dev/tpmrm0"), PathBuf::from("/dev/tpm0")];
            let mut reasons = Vec::new();
            for path in &candidates {
                match Device::open(path.clone()) {
                    Ok(d) => return Ok(Box::new(d)),
                    Err(e) => reasons.push(format!("{}: {e}", path.display())),
                }
            }
            Err(NoTpm {
                tried: "/dev/tpmrm0, /dev/tpm0".into(),
                reason: reasons.join("; "),
            })
        }
        TpmLocation::Device(path) => Device::open(path.clone())
            .map(|d| Box::new(d) as Box<dyn Transport>)
            .map_err(|e| NoTpm {
                tried: path.display().to_string(),
                reason: e.to_string(),
            }),
        TpmLocation::Tcp(addr) => Tcp::connect(*addr)
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .map_err(|e| NoTpm {
                tried: format!("tcp {addr}"),
                reason: e.to_string(),
            }),
    }
}

/// A TPM character device; one write is one command, one read one response.
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// Opens the device read-write.
    pub fn open(path: PathBuf) -> io::Result<Device> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Device { file, path })
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.file.write_all(command)?;
        // TPM2 responses are at most 4 KiB (MAX_RESPONSE_SIZE of PC-client TPMs).
        let mut buf = vec![0u8; 8192];
        let n = self.file.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// swtpm's TCP data channel: raw commands, responses framed by their header's size.
pub struct Tcp {
    stream: TcpStream,
    addr: SocketAddr,
}

impl Tcp {
    /// Connects with bounded connect and I/O timeouts.
    pub fn connect(addr: SocketAddr) -> io::Result<Tcp> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        // Creating a primary key can take seconds on a slow (emulated) TPM.
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Tcp { stream, addr })
    }
}

impl Transport for Tcp {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(command)?;
        let mut resp = vec![0u8; 10];
        self.stream.read_exact(&mut resp)?;
        let size = u32::from_be_bytes([resp[2], resp[3], resp[4], resp[5]]) as usize;
        if !(10..=65536).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TPM response size {size}"),
            ));
        }
        resp.resize(size, 0);
        self.stream.read_exact(&mut resp[10..])?;
        Ok(resp)
    }
    fn describe(&self) -> String {
        format!("swtpm at tcp {}", self.addr)
    }
}
