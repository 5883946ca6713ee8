//! EFI_LOAD_OPTION, the value of a `Boot####` variable (UEFI 2.10, 3.1.3), and the
//! device path nodes imprint writes into it (10.3): a hard drive media node naming
//! the GPT partition, a file path node naming the loader on it, the end node.
//!
//! Layout of a load option, all integers little-endian:
//! `u32 attributes | u16 file_path_list_length | UTF-16 description, NUL-terminated |
//! device path (file_path_list_length bytes) | optional data (the rest)`.

use uuid::Uuid;

/// The option may be booted (`LOAD_OPTION_ACTIVE`).
pub const LOAD_OPTION_ACTIVE: u32 = 0x0000_0001;

const MEDIA: u8 = 0x04;
const MEDIA_HARD_DRIVE: u8 = 0x01;
const MEDIA_FILE_PATH: u8 = 0x04;
const END: u8 = 0x7f;
const END_ENTIRE: u8 = 0xff;
/// Length of a hard drive media node: header 4, number 4, start 8, size 8, signature
/// 16, partition format 1, signature type 1.
const HARD_DRIVE_LEN: u16 = 42;
/// `MBRType` of a hard drive node: the partition is in a GPT.
const FORMAT_GPT: u8 = 0x02;
/// `SignatureType` of a hard drive node: the signature is the partition's GUID.
const SIGNATURE_GUID: u8 = 0x02;

/// Why bytes read from a `Boot####` variable are not a load option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("it is {0} bytes long, shorter than a load option's 6-byte header")]
    Short(usize),
    #[error("its description has no terminating NUL")]
    Unterminated,
    #[error(
        "its device path is {declared} bytes long, but only {left} bytes follow the description"
    )]
    PathLength { declared: usize, left: usize },
    #[error("its device path has a node of length {length} at byte {at} that does not fit")]
    Node { at: usize, length: usize },
    #[error("its device path does not end with an end node")]
    NoEnd,
}

/// A GPT partition as firmware finds it: by number, place and unique GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardDrive {
    /// 1-based GPT entry number.
    pub partition_number: u32,
    /// First LBA of the partition, in the disk's logical blocks.
    pub start_lba: u64,
    /// Size in logical blocks.
    pub size_lba: u64,
    /// The partition's unique GUID (not its type GUID).
    pub partition_guid: Uuid,
}

/// One node of a device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A GPT partition (media, hard drive).
    HardDrive(HardDrive),
    /// A file on the partition the previous node names, with backslashes.
    FilePath(String),
    /// A node imprint does not interpret, kept as read.
    Other {
        node_type: u8,
        subtype: u8,
        data: Vec<u8>,
    },
}

/// The decoded value of a `Boot####` variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    pub attributes: u32,
    /// What firmware menus show.
    pub description: String,
    /// The device path, without its end node.
    pub path: Vec<Node>,
    /// Bytes after the device path. imprint writes none: shim reads them as a loader path.
    pub optional_data: Vec<u8>,
}

impl LoadOption {
    /// An active option booting `loader` (backslashes) from the GPT partition `hd`.
    pub fn new(description: &str, hd: HardDrive, loader: &str) -> LoadOption {
        LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: description.to_string(),
            path: vec![Node::HardDrive(hd), Node::FilePath(loader.to_string())],
            optional_data: Vec::new(),
        }
    }

    /// The bytes of the variable (without efivarfs's attribute prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut path = Vec::new();
        for n in &self.path {
            encode_node(n, &mut path);
        }
        path.extend_from_slice(&[END, END_ENTIRE, 4, 0]);
        let mut out = Vec::with_capacity(6 + path.len() + 2 * self.description.len() + 2);
        out.extend_from_slice(&self.attributes.to_le_bytes());
        let len = u16::try_from(path.len()).expect("a device path of two nodes fits in u16");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend(utf16z(&self.description));
        out.extend(path);
        out.extend_from_slice(&self.optional_data);
        out
    }

    /// Reads the bytes of a `Boot####` variable.
    pub fn decode(b: &[u8]) -> Result<LoadOption, DecodeError> {
        if b.len() < 6 {
            return Err(DecodeError::Short(b.len()));
        }
        let attributes = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let path_len = usize::from(u16::from_le_bytes([b[4], b[5]]));
        let (description, used) = read_utf16z(&b[6..]).ok_or(DecodeError::Unterminated)?;
        let rest = &b[6 + used..];
        if rest.len() < path_len {
            return Err(DecodeError::PathLength {
                declared: path_len,
                left: rest.len(),
            });
        }
        let path = decode_path(&rest[..path_len])?;
        Ok(LoadOption {
            attributes,
            description,
            path,
            optional_data: rest[path_len..].to_vec(),
        })
    }

    /// The file path node's path, if the option has one.
    pub fn loader(&self) -> Option<&str> {
        self.path.iter().find_map(|n| match n {
            Node::FilePath(p) => Some(p.as_str()),
            _ => None,
        })
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The string before the first UTF-16 NUL of `b` and the bytes it took with the NUL.
fn read_utf16z(b: &[u8]) -> Option<(String, usize)> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let end = units.iter().position(|&u| u == 0)?;
    Some((String::from_utf16_lossy(&units[..end]), 2 * (end + 1)))
}

fn encode_node(n: &Node, out: &mut Vec<u8>) {
    match n {
        Node::HardDrive(hd) => {
            out.extend_from_slice(&[MEDIA, MEDIA_HARD_DRIVE]);
            out.extend_from_slice(&HARD_DRIVE_LEN.to_le_bytes());
            out.extend_from_slice(&hd.partition_number.to_le_bytes());
            out.extend_from_slice(&hd.start_lba.to_le_bytes());
            out.extend_from_slice(&hd.size_lba.to_le_bytes());
            // EFI_GUID: the first three fields little-endian, the last eight bytes as is.
            out.extend_from_slice(&hd.partition_guid.to_bytes_le());
            out.extend_from_slice(&[FORMAT_GPT, SIGNATURE_GUID]);
        }
        Node::FilePath(p) => {
            let name = utf16z(p);
            let len = u16::try_from(4 + name.len()).expect("a loader path is short");
            out.extend_from_slice(&[MEDIA, MEDIA_FILE_PATH]);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend(name);
        }
        Node::Other {
            node_type,
            subtype,
            data,
        } => {
            let len = u16::try_from(4 + data.len()).expect("a node read from a u16 length");
            out.extend_from_slice(&[*node_type, *subtype]);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(data);
        }
    }
}

/// The nodes of the first device path instance in `b`, up to its end node.
fn decode_path(b: &[u8]) -> Result<Vec<Node>, DecodeError> {
    let mut nodes = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let (node_type, subtype) = (b[at], b[at + 1]);
        let length = usize::from(u16::from_le_bytes([b[at + 2], b[at + 3]]));
        if length < 4 || at + length > b.len() {
            return Err(DecodeError::Node { at, length });
        }
        if node_type == END {
            return Ok(nodes);
        }
        nodes.push(decode_node(node_type, subtype, &b[at + 4..at + length]));
        at += length;
    }
    Err(DecodeError::NoEnd)
}

fn decode_node(node_type: u8, subtype: u8, data: &[u8]) -> Node {
    match (node_type, subtype) {
        (MEDIA, MEDIA_HARD_DRIVE)
            if data.len() + 4 == usize::from(HARD_DRIVE_LEN)
                && data[36] == FORMAT_GPT
                && data[37] == SIGNATURE_GUID =>
        {
            let u64_at = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().expect("8"));
            Node::HardDrive(HardDrive {
                partition_number: u32::from_le_bytes(data[0..4].try_into().expect("4")),
                start_lba: u64_at(4),
                size_lba: u64_at(12),
                partition_guid: Uuid::from_bytes_le(data[20..36].try_into().expect("16")),
            })
        }
        (MEDIA, MEDIA_FILE_PATH) => match read_utf16z(data) {
            Some((p, _)) => Node::FilePath(p),
            None => Node::Other {
                node_type,
                subtype,
                data: data.to_vec(),
            },
        },
        _ => Node::Other {
            node_type,
            subtype,
            data: data.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esp() -> HardDrive {
        HardDrive {
            partition_number: 1,
            start_lba: 2048,
            size_lba: 0x0010_0000,
            partition_guid: Uuid::parse_str("01234567-89ab-cdef-0011-223344556677").unwrap(),
        }
    }

    /// The bytes of an entry `Boot` for `\EFI\X.efi` on partition 1, written out field by
    /// field from the UEFI 2.10 specification, not from the encoder.
    fn by_hand() -> Vec<u8> {
        let mut b = Vec::new();
        // 3.1.3 EFI_LOAD_OPTION.Attributes: LOAD_OPTION_ACTIVE.
        b.extend([0x01, 0x00, 0x00, 0x00]);
        // FilePathListLength: hard drive node 42 + file path node 4 + 2*len("\EFI\X.efi"
        // + NUL) = 4 + 22 = 26, + end node 4 = 72 = 0x48.
        b.extend([0x48, 0x00]);
        // Description "Boot" in UCS-2 with its NUL.
        b.extend([b'B', 0, b'o', 0, b'o', 0, b't', 0, 0, 0]);
        // 10.3.5.1 Hard Drive: Type 4 (media), SubType 1, Length 42.
        b.extend([0x04, 0x01, 42, 0x00]);
        // PartitionNumber 1 (u32), PartitionStart 2048 = 0x800 (u64),
        // PartitionSize 0x100000 (u64).
        b.extend([0x01, 0, 0, 0]);
        b.extend([0x00, 0x08, 0, 0, 0, 0, 0, 0]);
        b.extend([0x00, 0x00, 0x10, 0, 0, 0, 0, 0]);
        // PartitionSignature: EFI_GUID 01234567-89ab-cdef-0011-223344556677 stores
        // Data1 (u32), Data2 and Data3 (u16) little-endian, Data4 as written.
        b.extend([0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd]);
        b.extend([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
        // PartitionFormat 0x02 (GUID partition table), SignatureType 0x02 (GUID).
        b.extend([0x02, 0x02]);
        // 10.3.5.4 File Path: Type 4, SubType 4, Length 4 + 22 = 26, PathName in UCS-2.
        b.extend([0x04, 0x04, 26, 0x00]);
        for c in "\\EFI\\X.efi".bytes() {
            b.extend([c, 0]);
        }
        b.extend([0, 0]);
        // 10.3.1 End of Hardware Device Path: Type 0x7F, SubType 0xFF (entire path), Length 4.
        b.extend([0x7f, 0xff, 0x04, 0x00]);
        b
    }

    #[test]
    fn encodes_a_load_option_as_the_specification_lays_it_out() {
        let opt = LoadOption::new("Boot", esp(), "\\EFI\\X.efi");
        assert_eq!(opt.encode(), by_hand());
    }

    #[test]
    fn decodes_what_it_encodes() {
        let opt = LoadOption::new(
            "debian (imprint, wwn 5000c500a1b2c3d4)",
            esp(),
            "\\EFI\\debian\\shimx64.efi",
        );
        let back = LoadOption::decode(&opt.encode()).unwrap();
        assert_eq!(back, opt);
        assert_eq!(back.loader(), Some("\\EFI\\debian\\shimx64.efi"));
        assert_eq!(
            LoadOption::decode(&by_hand()).unwrap().path[0],
            Node::HardDrive(esp())
        );
    }

    #[test]
    fn keeps_nodes_and_optional_data_it_does_not_interpret() {
        // A PciRoot-style node (ACPI, type 2 subtype 1) before the file path, and
        // optional data as other tools write it.
        let opt = LoadOption {
            attributes: 0,
            description: "UEFI PXEv4".into(),
            path: vec![Node::Other {
                node_type: 2,
                subtype: 1,
                data: vec![0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0],
            }],
            optional_data: b"\x4e\xac\x08\x81".to_vec(),
        };
        assert_eq!(LoadOption::decode(&opt.encode()).unwrap(), opt);
    }

    #[test]
    fn refuses_truncated_options_with_what_is_wrong() {
        let b = by_hand();
        assert_eq!(LoadOption::decode(&b[..4]), Err(DecodeError::Short(4)));
        assert_eq!(
            LoadOption::decode(&b[..60]),
            Err(DecodeError::PathLength {
                declared: 72,
                left: 44
            })
        );
        let mut no_end = b.clone();
        let n = no_end.len();
        no_end[n - 4] = 0x04; // the end node turned into a media node of length 4
        no_end[n - 3] = 0x05;
        assert_eq!(LoadOption::decode(&no_end), Err(DecodeError::NoEnd));
        assert_eq!(
            LoadOption::decode(&[1, 0, 0, 0, 0, 0, b'B', 0]),
            Err(DecodeError::Unterminated)
        );
    }
}
