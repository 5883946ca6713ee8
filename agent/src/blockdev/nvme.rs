//! NVMe admin commands through `NVME_IOCTL_ADMIN_CMD` on a namespace's block device:
//! Identify, Sanitize, the Sanitize Status log and Format NVM, and what Identify says
//! the controller can erase with.
//!
//! Command encoding and capability parsing are plain functions over bytes (NVMe Base
//! Specification 2.0, Identify Controller and Identify Namespace data structures), so
//! they are tested without a device.

use super::{name_of, BlockError, Result};
use std::fs::File;
use std::os::fd::AsRawFd;

/// `struct nvme_passthru_cmd` (linux/nvme_ioctl.h), also the admin command's layout.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdminCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

mod sys {
    use nix::{ioctl_none, ioctl_readwrite};
    ioctl_none!(nvme_ioctl_id, b'N', 0x40);
    ioctl_readwrite!(nvme_ioctl_admin_cmd, b'N', 0x41, super::AdminCmd);
}

const OP_GET_LOG_PAGE: u8 = 0x02;
const OP_IDENTIFY: u8 = 0x06;
const OP_FORMAT_NVM: u8 = 0x80;
const OP_SANITIZE: u8 = 0x84;
/// Log Identifier of the Sanitize Status log page.
pub const LOG_SANITIZE_STATUS: u8 = 0x81;
/// Bytes of the Sanitize Status log page read (its defined part).
pub const SANITIZE_LOG_LEN: usize = 512;

/// Sanitize Action (SANACT, CDW10 bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    BlockErase = 2,
    Overwrite = 3,
    CryptoErase = 4,
}

/// Secure Erase Settings of Format NVM (SES, CDW10 bits 11:9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    UserData = 1,
    Crypto = 2,
}

/// Identify with CNS `cns` (1: controller, 0: namespace `nsid`) into 4096 bytes.
pub fn identify_cmd(cns: u32, nsid: u32) -> AdminCmd {
    AdminCmd {
        opcode: OP_IDENTIFY,
        nsid,
        data_len: 4096,
        cdw10: cns,
        ..AdminCmd::default()
    }
}

/// Sanitize with `action`; the controller sanitizes every namespace (NSID is unused).
pub fn sanitize_cmd(action: SanitizeAction) -> AdminCmd {
    AdminCmd {
        opcode: OP_SANITIZE,
        cdw10: action as u32,
        ..AdminCmd::default()
    }
}

/// Get Log Page of the Sanitize Status log, controller-wide (NSID all ones).
pub fn sanitize_log_cmd() -> AdminCmd {
    let numd = (SANITIZE_LOG_LEN / 4 - 1) as u32;
    AdminCmd {
        opcode: OP_GET_LOG_PAGE,
        nsid: u32::MAX,
        data_len: SANITIZE_LOG_LEN as u32,
        // LID in bits 7:0, NUMDL (dwords minus one, low 16 bits) in bits 31:16.
        cdw10: u32::from(LOG_SANITIZE_STATUS) | ((numd & 0xffff) << 16),
        cdw11: numd >> 16,
        ..AdminCmd::default()
    }
}

/// Format NVM of namespace `nsid` keeping LBA format `lbaf`, erasing with `ses`.
pub fn format_cmd(nsid: u32, lbaf: u8, ses: SecureErase, timeout_ms: u32) -> AdminCmd {
    let lbaf = u32::from(lbaf);
    AdminCmd {
        opcode: OP_FORMAT_NVM,
        nsid,
        // LBAF bits 3:0, SES bits 11:9, LBAFU (format index bits 5:4) bits 13:12.
        cdw10: (lbaf & 0xf) | ((ses as u32) << 9) | (((lbaf >> 4) & 0x3) << 12),
        timeout_ms,
        ..AdminCmd::default()
    }
}

/// What Identify Controller says about erasing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EraseCaps {
    /// SANICAP bit 0: Sanitize crypto erase.
    pub sanitize_crypto: bool,
    /// SANICAP bit 1: Sanitize block erase.
    pub sanitize_block: bool,
    /// SANICAP bit 2: Sanitize overwrite.
    pub sanitize_overwrite: bool,
    /// OACS bit 1: Format NVM is supported.
    pub format: bool,
    /// FNA bit 2: Format's cryptographic erase is supported.
    pub format_crypto: bool,
    /// FNA bit 1: a secure erase by Format applies to every namespace.
    pub format_erases_all_namespaces: bool,
}

impl EraseCaps {
    /// Parses Identify Controller data (OACS bytes 257:256, SANICAP 331:328, FNA 524).
    pub fn parse(id_ctrl: &[u8]) -> EraseCaps {
        let byte = |i: usize| id_ctrl.get(i).copied().unwrap_or(0);
        let oacs = u16::from_le_bytes([byte(256), byte(257)]);
        let sanicap = u32::from_le_bytes([byte(328), byte(329), byte(330), byte(331)]);
        let fna = byte(524);
        EraseCaps {
            sanitize_crypto: sanicap & 1 != 0,
            sanitize_block: sanicap & 2 != 0,
            sanitize_overwrite: sanicap & 4 != 0,
            format: oacs & 2 != 0,
            format_crypto: fna & 4 != 0,
            format_erases_all_namespaces: fna & 2 != 0,
        }
    }

    /// The capabilities in words, for the report.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut say = |on: bool, what: &str| {
            if on {
                w.push(what.to_string());
            }
        };
        say(self.sanitize_crypto, "sanitize crypto erase");
        say(self.sanitize_block, "sanitize block erase");
        say(self.sanitize_overwrite, "sanitize overwrite");
        say(self.format, "format nvm");
        say(self.format_crypto, "format crypto erase");
        say(
            self.format_erases_all_namespaces,
            "format secure erase applies to all namespaces",
        );
        if w.is_empty() {
            w.push("no sanitize, no format nvm".into());
        }
        w
    }
}

/// The current LBA format index of Identify Namespace data (FLBAS bits 3:0 and 6:5).
pub fn current_lbaf(id_ns: &[u8]) -> u8 {
    let flbas = id_ns.get(26).copied().unwrap_or(0);
    (flbas & 0xf) | (((flbas >> 5) & 0x3) << 4)
}

/// Sanitize Status (SSTAT bits 2:0 of the log page) and progress (SPROG / 65536).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeState {
    NeverSanitized,
    Completed,
    /// SPROG: the fraction done, in 65536ths.
    InProgress {
        sprog: u16,
    },
    Failed,
    /// Completed, and the media were not deallocated afterwards (still a completion).
    CompletedNoDeallocate,
    Unknown(u8),
}

/// Parses the Sanitize Status log page.
pub fn sanitize_state(log: &[u8]) -> SanitizeState {
    let b = |i: usize| log.get(i).copied().unwrap_or(0);
    let sprog = u16::from_le_bytes([b(0), b(1)]);
    match b(2) & 0x7 {
        0 => SanitizeState::NeverSanitized,
        1 => SanitizeState::Completed,
        2 => SanitizeState::InProgress { sprog },
        3 => SanitizeState::Failed,
        4 => SanitizeState::CompletedNoDeallocate,
        s => SanitizeState::Unknown(s),
    }
}

/// The namespace id of an NVMe namespace's block device (NVME_IOCTL_ID).
pub fn namespace_id(f: &File) -> Result<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument; the fd is open for the call.
    let id = unsafe { sys::nvme_ioctl_id(f.as_raw_fd()) }.map_err(|e| BlockError::Ioctl {
        op: "NVME_IOCTL_ID",
        path: name_of(f),
        source: e.into(),
    })?;
    Ok(id as u32)
}

/// Runs admin command `cmd`, its data transferred through `data` (whose length must be
/// `cmd.data_len`); the completion's result dword on success.
pub fn admin(f: &File, op: &'static str, mut cmd: AdminCmd, data: &mut [u8]) -> Result<u32> {
    assert_eq!(data.len(), cmd.data_len as usize, "buffer of {op}");
    if !data.is_empty() {
        cmd.addr = data.as_mut_ptr() as u64;
    }
    // SAFETY: `cmd` is a live, properly laid-out nvme_passthru_cmd; its addr points at
    // `data`, borrowed mutably for the call and exactly data_len bytes long, or is 0
    // with data_len 0. The kernel copies the command in and out before returning.
    let status = unsafe { sys::nvme_ioctl_admin_cmd(f.as_raw_fd(), &mut cmd) }.map_err(|e| {
        BlockError::Ioctl {
            op,
            path: name_of(f),
            source: e.into(),
        }
    })?;
    if status != 0 {
        return Err(BlockError::Nvme {
            op,
            path: name_of(f),
            status: status as u32,
        });
    }
    Ok(cmd.result)
}

/// Identify Controller data (4096 bytes).
pub fn identify_controller(f: &File) -> Result<Vec<u8>> {
    let mut data = vec![0u8; 4096];
    admin(f, "NVMe Identify Controller", identify_cmd(1, 0), &mut data)?;
    Ok(data)
}

/// Identify Namespace data of `nsid` (4096 bytes).
pub fn identify_namespace(f: &File, nsid: u32) -> Result<Vec<u8>> {
    let mut data = vec![0u8; 4096];
    admin(
        f,
        "NVMe Identify Namespace",
        identify_cmd(0, nsid),
        &mut data,
    )?;
    Ok(data)
}

/// Starts a Sanitize; it runs in the background (see [`sanitize_status`]).
pub fn sanitize(f: &File, action: SanitizeAction) -> Result<()> {
    admin(f, "NVMe Sanitize", sanitize_cmd(action), &mut []).map(drop)
}

/// The Sanitize Status log page.
pub fn sanitize_status(f: &File) -> Result<SanitizeState> {
    let mut log = vec![0u8; SANITIZE_LOG_LEN];
    admin(
        f,
        "NVMe Get Log Page (Sanitize Status)",
        sanitize_log_cmd(),
        &mut log,
    )?;
    Ok(sanitize_state(&log))
}

/// Formats namespace `nsid` in LBA format `lbaf` with secure erase `ses`; returns when done.
pub fn format(f: &File, nsid: u32, lbaf: u8, ses: SecureErase, timeout_ms: u32) -> Result<()> {
    let cmd = format_cmd(nsid, lbaf, ses, timeout_ms);
    admin(f, "NVMe Format NVM", cmd, &mut []).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passthru_command_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<AdminCmd>(), 72);
    }

    #[test]
    fn sanitize_puts_the_action_in_cdw10() {
        let c = sanitize_cmd(SanitizeAction::CryptoErase);
        assert_eq!((c.opcode, c.cdw10, c.nsid, c.data_len), (0x84, 4, 0, 0));
        assert_eq!(sanitize_cmd(SanitizeAction::BlockErase).cdw10, 2);
        assert_eq!(sanitize_cmd(SanitizeAction::Overwrite).cdw10, 3);
    }

    #[test]
    fn the_sanitize_log_is_requested_by_id_and_dword_count() {
        let c = sanitize_log_cmd();
        assert_eq!(c.opcode, 0x02);
        assert_eq!(c.cdw10 & 0xff, 0x81);
        // 512 bytes = 128 dwords, sent zero-based.
        assert_eq!(c.cdw10 >> 16, 127);
        assert_eq!((c.cdw11, c.nsid, c.data_len), (0, u32::MAX, 512));
    }

    #[test]
    fn format_keeps_the_lba_format_and_sets_ses() {
        let c = format_cmd(1, 3, SecureErase::Crypto, 1000);
        assert_eq!(c.opcode, 0x80);
        assert_eq!(c.nsid, 1);
        assert_eq!(c.cdw10, 3 | (2 << 9));
        assert_eq!(format_cmd(1, 0, SecureErase::UserData, 0).cdw10, 1 << 9);
        // Format index 18: LBAF 2, LBAFU 1.
        assert_eq!(
            format_cmd(1, 18, SecureErase::UserData, 0).cdw10,
            2 | (1 << 9) | (1 << 12)
        );
    }

    /// Identify Controller data with the given OACS, SANICAP and FNA, per the spec's offsets.
    fn id_ctrl(oacs: u16, sanicap: u32, fna: u8) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[256..258].copy_from_slice(&oacs.to_le_bytes());
        d[328..332].copy_from_slice(&sanicap.to_le_bytes());
        d[524] = fna;
        d
    }

    #[test]
    fn capabilities_come_from_sanicap_oacs_and_fna() {
        let c = EraseCaps::parse(&id_ctrl(0x000a, 0b011, 0b100));
        assert!(c.sanitize_crypto && c.sanitize_block && !c.sanitize_overwrite);
        assert!(c.format && c.format_crypto && !c.format_erases_all_namespaces);
        // QEMU's controller: Format (OACS bit 1) and nothing else erase-related.
        let q = EraseCaps::parse(&id_ctrl(0x000e, 0, 0));
        assert_eq!(
            q,
            EraseCaps {
                format: true,
                ..EraseCaps::default()
            }
        );
        assert_eq!(q.words(), ["format nvm"]);
        assert_eq!(
            EraseCaps::parse(&id_ctrl(0, 0, 0)).words(),
            ["no sanitize, no format nvm"]
        );
    }

    #[test]
    fn the_current_lba_format_joins_flbas_low_and_high_bits() {
        let mut ns = vec![0u8; 4096];
        ns[26] = 0x12; // metadata bit 4 set, format 2
        assert_eq!(current_lbaf(&ns), 2);
        ns[26] = 0x21; // bits 6:5 = 1 → format 16 + 1
        assert_eq!(current_lbaf(&ns), 17);
    }

    #[test]
    fn sanitize_status_reads_sstat_and_progress() {
        let mut log = vec![0u8; 512];
        log[0..2].copy_from_slice(&32768u16.to_le_bytes());
        log[2] = 2;
        assert_eq!(
            sanitize_state(&log),
            SanitizeState::InProgress { sprog: 32768 }
        );
        log[2] = 0x09; // global data erased bit set, status completed
        assert_eq!(sanitize_state(&log), SanitizeState::Completed);
        log[2] = 3;
        assert_eq!(sanitize_state(&log), SanitizeState::Failed);
        log[2] = 4;
        assert_eq!(sanitize_state(&log), SanitizeState::CompletedNoDeallocate);
    }
}
