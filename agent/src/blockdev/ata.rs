//! ATA commands through SG_IO and SCSI ATA PASS-THROUGH (16) (SAT-4): IDENTIFY DEVICE
//! and the Security feature set's SET PASSWORD, ERASE PREPARE and ERASE UNIT, and what
//! IDENTIFY says about them (ACS-3, words 82, 89, 90 and 128).
//!
//! The command blocks and the parsing are plain functions over bytes, tested without a
//! device; a device that is not ATA behind libata (virtio, NVMe) refuses SG_IO or the
//! pass-through, which [`identify`] reports as an error.

use super::{name_of, BlockError, Result};
use std::fs::File;
use std::os::fd::AsRawFd;

/// `struct sg_io_hdr` (scsi/sg.h).
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

mod sys {
    nix::ioctl_readwrite_bad!(sg_io, 0x2285, super::SgIoHdr);
}

const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

const IDENTIFY_DEVICE: u8 = 0xec;
const SECURITY_SET_PASSWORD: u8 = 0xf1;
const SECURITY_ERASE_PREPARE: u8 = 0xf3;
const SECURITY_ERASE_UNIT: u8 = 0xf4;

/// Direction of a command's one 512-byte data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    None,
    In,
    Out,
}

/// An ATA PASS-THROUGH (16) command block for 28-bit `command` with one 512-byte
/// block moved in direction `data` (sector count 1), or none.
pub fn pass_through(command: u8, data: Data) -> [u8; 16] {
    // PROTOCOL (byte 1, bits 4:1): 3 non-data, 4 PIO data-in, 5 PIO data-out.
    // Byte 2: T_DIR (bit 3, 1 = from the device), BYTE_BLOCK (bit 2, count in blocks),
    // T_LENGTH (bits 1:0, 2 = the length is in the sector count field).
    let (protocol, flags, count) = match data {
        Data::None => (3u8, 0x20u8, 0u8), // CK_COND: return the registers
        Data::In => (4, 0x0e, 1),
        Data::Out => (5, 0x06, 1),
    };
    let mut cdb = [0u8; 16];
    cdb[0] = 0x85;
    cdb[1] = protocol << 1;
    cdb[2] = flags;
    cdb[6] = count;
    cdb[14] = command;
    cdb
}

/// The 512-byte data block of SET PASSWORD and ERASE UNIT: the user password (word 0
/// bit 0 clear), `enhanced` erase (word 0 bit 1; ERASE UNIT only), the password in
/// words 1–16, padded with zeros.
pub fn password_block(password: &[u8], enhanced: bool) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0] = if enhanced { 0x02 } else { 0x00 };
    let n = password.len().min(32);
    b[2..2 + n].copy_from_slice(&password[..n]);
    b
}

/// What IDENTIFY DEVICE says about the Security feature set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Security {
    /// Word 82 bit 1 and word 128 bit 0.
    pub supported: bool,
    /// Word 128 bit 1: a password is set.
    pub enabled: bool,
    /// Word 128 bit 2.
    pub locked: bool,
    /// Word 128 bit 3: security commands are refused until a power cycle.
    pub frozen: bool,
    /// Word 128 bit 5.
    pub enhanced_erase: bool,
    /// Minutes word 89 (normal) or 90 (enhanced) says the erase takes; 0 when unsaid.
    pub erase_minutes: u32,
    pub enhanced_erase_minutes: u32,
}

/// Minutes of an erase time word: bit 15 clear, 2 minutes per unit in bits 7:0; set,
/// 2 minutes per unit in bits 14:0 (ACS-3 7.12.7.53).
fn erase_minutes(word: u16) -> u32 {
    let units = if word & 0x8000 != 0 {
        word & 0x7fff
    } else {
        word & 0xff
    };
    u32::from(units) * 2
}

impl Security {
    /// Parses IDENTIFY DEVICE data (256 little-endian words).
    pub fn parse(id: &[u8]) -> Security {
        let w = |i: usize| u16::from_le_bytes([id[2 * i], id[2 * i + 1]]);
        if id.len() < 512 {
            return Security::default();
        }
        let sec = w(128);
        Security {
            supported: w(82) & 0x2 != 0 && sec & 0x1 != 0,
            enabled: sec & 0x2 != 0,
            locked: sec & 0x4 != 0,
            frozen: sec & 0x8 != 0,
            enhanced_erase: sec & 0x20 != 0,
            erase_minutes: erase_minutes(w(89)),
            enhanced_erase_minutes: erase_minutes(w(90)),
        }
    }

    /// The state in words, for the report.
    pub fn words(&self) -> Vec<String> {
        if !self.supported {
            return vec!["no ATA security feature set".into()];
        }
        let mut w = vec!["ATA security erase".to_string()];
        for (on, what) in [
            (self.enhanced_erase, "enhanced erase"),
            (self.enabled, "password set"),
            (self.locked, "locked"),
            (self.frozen, "frozen"),
        ] {
            if on {
                w.push(what.into());
            }
        }
        w
    }
}

/// Sends `cdb` through SG_IO with `data` (512 bytes or none) and a `timeout_ms`.
fn sg_io(
    f: &File,
    op: &'static str,
    cdb: &[u8; 16],
    data: Option<(&mut [u8; 512], Data)>,
    timeout_ms: u32,
) -> Result<()> {
    let mut sense = [0u8; 32];
    let (dir, len, ptr) = match data {
        Some((buf, Data::In)) => (SG_DXFER_FROM_DEV, 512, buf.as_mut_ptr()),
        Some((buf, Data::Out)) => (SG_DXFER_TO_DEV, 512, buf.as_mut_ptr()),
        _ => (SG_DXFER_NONE, 0, std::ptr::null_mut()),
    };
    let mut hdr = SgIoHdr {
        interface_id: b'S' as libc::c_int,
        dxfer_direction: dir,
        cmd_len: 16,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: ptr.cast(),
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: hdr is a live sg_io_hdr whose cmdp, sbp and dxferp point at `cdb`,
    // `sense` and the caller's 512-byte buffer (or are null with dxfer_len 0), all
    // borrowed for the duration of the synchronous ioctl.
    unsafe { sys::sg_io(f.as_raw_fd(), &mut hdr) }.map_err(|e| BlockError::Unsupported {
        op,
        path: name_of(f),
        source: e.into(),
    })?;
    // CHECK CONDITION with ATA status return (sense key 0, ASC/ASCQ 0/0x1d) is how
    // CK_COND answers; an error bit in the returned ATA status is a failure.
    let check_condition = hdr.status == 0x02;
    let error = hdr.host_status != 0
        || (hdr.driver_status & 0xf != 0 && !check_condition)
        || (check_condition && ata_error(&sense[..hdr.sb_len_wr as usize]));
    if error {
        return Err(BlockError::Ata {
            op,
            path: name_of(f),
            detail: format!(
                "SCSI status {:#x}, host {:#x}, driver {:#x}, sense {}",
                hdr.status,
                hdr.host_status,
                hdr.driver_status,
                hex::encode(&sense[..hdr.sb_len_wr as usize])
            ),
        });
    }
    Ok(())
}

/// Whether sense data reports an ATA error: a sense key other than none/recovered,
/// or an ATA Status Return descriptor (0x09) whose status has ERR (bit 0) set.
fn ata_error(sense: &[u8]) -> bool {
    if sense.len() < 8 {
        return !sense.is_empty();
    }
    // Response code 0x72/0x73: descriptor format; 0x70/0x71: fixed (key in byte 2).
    let descriptor = sense[0] & 0x7e == 0x72;
    let key = if descriptor { sense[1] } else { sense[2] } & 0xf;
    if key != 0 && key != 1 {
        return true;
    }
    if !descriptor {
        return false;
    }
    // Descriptors start at byte 8; an ATA Status Return's status is its byte 13.
    let d = &sense[8..];
    d.len() >= 14 && d[0] == 0x09 && d[13] & 0x01 != 0
}

/// IDENTIFY DEVICE data (512 bytes).
pub fn identify(f: &File) -> Result<[u8; 512]> {
    let mut buf = [0u8; 512];
    let cdb = pass_through(IDENTIFY_DEVICE, Data::In);
    sg_io(
        f,
        "ATA IDENTIFY DEVICE",
        &cdb,
        Some((&mut buf, Data::In)),
        10_000,
    )?;
    Ok(buf)
}

/// SECURITY SET PASSWORD (user password, high security), which enables security.
pub fn set_password(f: &File, password: &[u8]) -> Result<()> {
    let mut b = password_block(password, false);
    let cdb = pass_through(SECURITY_SET_PASSWORD, Data::Out);
    sg_io(
        f,
        "ATA SECURITY SET PASSWORD",
        &cdb,
        Some((&mut b, Data::Out)),
        10_000,
    )
}

/// SECURITY ERASE PREPARE then SECURITY ERASE UNIT with the user `password`; returns
/// when the device has erased (which also disables security).
pub fn erase_unit(f: &File, password: &[u8], enhanced: bool, timeout_ms: u32) -> Result<()> {
    let prep = pass_through(SECURITY_ERASE_PREPARE, Data::None);
    sg_io(f, "ATA SECURITY ERASE PREPARE", &prep, None, 10_000)?;
    let mut b = password_block(password, enhanced);
    let cdb = pass_through(SECURITY_ERASE_UNIT, Data::Out);
    sg_io(
        f,
        "ATA SECURITY ERASE UNIT",
        &cdb,
        Some((&mut b, Data::Out)),
        timeout_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_is_a_pio_data_in_of_one_block() {
        let c = pass_through(IDENTIFY_DEVICE, Data::In);
        assert_eq!(c[0], 0x85, "ATA PASS-THROUGH (16)");
        assert_eq!((c[1] >> 1) & 0xf, 4, "PIO data-in");
        assert_eq!(
            c[2], 0b0000_1110,
            "from the device, in blocks, count in sector count"
        );
        assert_eq!((c[6], c[14]), (1, 0xec));
    }

    #[test]
    fn erase_unit_sends_one_block_to_the_device_and_prepare_sends_none() {
        let c = pass_through(SECURITY_ERASE_UNIT, Data::Out);
        assert_eq!(
            ((c[1] >> 1) & 0xf, c[2], c[6], c[14]),
            (5, 0b0000_0110, 1, 0xf4)
        );
        let p = pass_through(SECURITY_ERASE_PREPARE, Data::None);
        assert_eq!(((p[1] >> 1) & 0xf, p[6], p[14]), (3, 0, 0xf3));
    }

    #[test]
    fn the_password_block_holds_the_identifier_the_mode_and_the_password() {
        let b = password_block(b"imprint", true);
        assert_eq!(b[0], 0x02, "user password, enhanced erase");
        assert_eq!(&b[2..9], b"imprint");
        assert!(b[9..].iter().all(|&x| x == 0));
        assert_eq!(password_block(b"x", false)[0], 0);
    }

    /// IDENTIFY data with words 82, 89, 90 and 128 set.
    fn identify_data(w82: u16, w89: u16, w90: u16, w128: u16) -> Vec<u8> {
        let mut d = vec![0u8; 512];
        for (i, v) in [(82, w82), (89, w89), (90, w90), (128, w128)] {
            d[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        d
    }

    #[test]
    fn security_state_comes_from_words_82_and_128() {
        let s = Security::parse(&identify_data(0x0002, 30, 0x8005, 0b10_1001));
        assert!(s.supported && s.frozen && s.enhanced_erase && !s.enabled && !s.locked);
        assert_eq!((s.erase_minutes, s.enhanced_erase_minutes), (60, 10));
        assert_eq!(
            s.words(),
            ["ATA security erase", "enhanced erase", "frozen"]
        );
        // Word 128 without word 82's bit (QEMU's IDE disk sets neither): unsupported.
        let q = Security::parse(&identify_data(0x4021, 0, 0, 0x0001));
        assert!(!q.supported);
        assert_eq!(q.words(), ["no ATA security feature set"]);
    }

    #[test]
    fn an_error_bit_in_the_returned_ata_status_is_a_failure() {
        let mut sense = vec![0u8; 22];
        sense[0] = 0x72;
        sense[8] = 0x09;
        assert!(!ata_error(&sense));
        sense[8 + 13] = 0x51; // DRDY | DSC | ERR
        assert!(ata_error(&sense));
        sense[8 + 13] = 0;
        sense[1] = 0x05; // ILLEGAL REQUEST
        assert!(ata_error(&sense));
    }
}
