//! The handful of TPM2 commands the clevis tpm2 pin needs, marshalled by hand, and the
//! object templates clevis (tpm2-tools defaults) uses, byte for byte.

use super::transport::Transport;
use super::wire::{build, Command, Reader, RS_PW, ST_NO_SESSIONS, ST_SESSIONS};
use zeroize::Zeroizing;

const CC_CREATE_PRIMARY: u32 = 0x131;
const CC_CREATE: u32 = 0x153;
const CC_LOAD: u32 = 0x157;
const CC_UNSEAL: u32 = 0x15E;
const CC_FLUSH_CONTEXT: u32 = 0x165;
const CC_START_AUTH_SESSION: u32 = 0x176;
const CC_PCR_READ: u32 = 0x17E;
/// TPM_CC_PolicyPCR (also hashed into the policy digest).
pub const CC_POLICY_PCR: u32 = 0x17F;

const RH_OWNER: u32 = 0x4000_0001;
const RH_NULL: u32 = 0x4000_0007;

/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;
const ALG_RSA: u16 = 0x0001;
const ALG_AES: u16 = 0x0006;
const ALG_KEYEDHASH: u16 = 0x0008;
const ALG_NULL: u16 = 0x0010;
const ALG_ECC: u16 = 0x0023;
const ALG_CFB: u16 = 0x0043;
const ECC_NIST_P256: u16 = 0x0003;

/// restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth (tpm2_createprimary).
const PRIMARY_ATTRS: u32 = 0x0003_0072;
/// fixedTPM|fixedParent|noDA|adminWithPolicy (clevis `obj_attr`).
const SEALED_ATTRS: u32 = 0x0000_0492;
/// TPMA_OBJECT userWithAuth: clevis adds it when there is no PCR policy.
const USER_WITH_AUTH: u32 = 0x0000_0040;

/// A TPM command that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("talking to the TPM ({device}) during {command}: {source}")]
    Io {
        device: String,
        command: &'static str,
        source: std::io::Error,
    },
    #[error("the TPM ({device}) refused {command}: {meaning} (TPM_RC 0x{rc:03X})")]
    Refused {
        device: String,
        command: &'static str,
        rc: u32,
        meaning: &'static str,
    },
    #[error("the TPM's response to {command} is malformed: {source}")]
    Malformed {
        command: &'static str,
        source: super::wire::Short,
    },
}

impl CommandError {
    /// The TPM_RC with the handle/session/parameter index stripped (format 1), if refused.
    pub fn base_rc(&self) -> Option<u32> {
        match self {
            CommandError::Refused { rc, .. } if rc & 0x80 != 0 => Some(0x80 | (rc & 0x3F)),
            CommandError::Refused { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

const RC_RETRY: u32 = 0x922;
const RC_YIELDED: u32 = 0x908;
const RC_TESTING: u32 = 0x90A;
/// Attempts of one command while the TPM answers "retry".
const RETRIES: u32 = 20;

/// TPM_RC_POLICY_FAIL: the policy session does not satisfy the object's policy.
pub const RC_POLICY_FAIL: u32 = 0x80 | 0x1D;
/// TPM_RC_INTEGRITY: the blob was not made under this parent (another TPM, or a cleared one).
pub const RC_INTEGRITY: u32 = 0x80 | 0x1F;

fn meaning(rc: u32) -> &'static str {
    let base = if rc & 0x80 != 0 {
        0x80 | (rc & 0x3F)
    } else {
        rc & 0xFFF
    };
    match base {
        RC_POLICY_FAIL => "policy check failed (PCR values differ from those sealed to)",
        RC_INTEGRITY => {
            "integrity check failed (the object was sealed by a different TPM or owner seed)"
        }
        0x0A2 | 0x08E => "authorization failure (does the owner hierarchy have a password?)",
        0x0A5 | 0x0A8 => "value or size out of range",
        0x100 => "TPM not initialized (TPM2_Startup missing)",
        0x101 => "TPM in failure mode",
        0x121 => "TPM is in dictionary-attack lockout",
        0x902 | 0x903 => "out of object or session memory",
        0x922 => "retry later",
        _ => "see TPM 2.0 Part 2, TPM_RC",
    }
}

/// The primary key type clevis names in `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryKey {
    Ecc,
    Rsa,
}

/// The clevis primary template (tpm2_createprimary -C o -g HASH -G ecc|rsa): TPMT_PUBLIC.
pub fn primary_template(key: PrimaryKey, name_alg: u16) -> Vec<u8> {
    build(|c| {
        match key {
            PrimaryKey::Ecc => c.u16(ALG_ECC),
            PrimaryKey::Rsa => c.u16(ALG_RSA),
        };
        c.u16(name_alg).u32(PRIMARY_ATTRS).u16(0); // authPolicy empty
        c.u16(ALG_AES).u16(128).u16(ALG_CFB).u16(ALG_NULL); // symmetric, scheme
        match key {
            PrimaryKey::Ecc => c.u16(ECC_NIST_P256).u16(ALG_NULL).u16(0).u16(0), // curve, kdf, unique x/y
            PrimaryKey::Rsa => c.u16(2048).u32(0).u16(0), // keyBits, exponent, unique
        };
    })
}

/// The sealed data object template: TPMT_PUBLIC of a keyedhash holding data.
pub fn sealed_template(name_alg: u16, policy: Option<&[u8]>) -> Vec<u8> {
    build(|c| {
        let attrs = if policy.is_some() {
            SEALED_ATTRS
        } else {
            SEALED_ATTRS | USER_WITH_AUTH
        };
        c.u16(ALG_KEYEDHASH)
            .u16(name_alg)
            .u32(attrs)
            .tpm2b(policy.unwrap_or(&[]));
        c.u16(ALG_NULL).u16(0); // scheme NULL, unique empty
    })
}

/// A TPML_PCR_SELECTION for one bank, with the 3-byte bitmap tpm2-tools always uses.
pub fn pcr_selection(bank: u16, pcrs: &[u8]) -> Vec<u8> {
    let mut map = [0u8; 3];
    for p in pcrs {
        map[*p as usize / 8] |= 1 << (p % 8);
    }
    build(|c| {
        c.u32(1).u16(bank).u8(3).raw(&map);
    })
}

/// A TPM reached through a transport.
pub struct Tpm {
    transport: Box<dyn Transport>,
}

impl Tpm {
    /// Wraps a transport.
    pub fn new(transport: Box<dyn Transport>) -> Tpm {
        Tpm { transport }
    }

    /// Sends `cmd`, returns the response after the 10-byte header if TPM_RC_SUCCESS.
    /// Command and response may carry secrets (Create, Unseal): both are zeroized.
    fn execute(
        &mut self,
        command: &'static str,
        cmd: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, CommandError> {
        let cmd = Zeroizing::new(cmd);
        let device = self.transport.describe();
        // TPM_RC_RETRY, _YIELDED, _TESTING: the TPM could not start the command yet; send
        // it again (a few times, briefly apart), as tpm2-tss does.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = Zeroizing::new(self.transport.transact(&cmd).map_err(|source| {
                CommandError::Io {
                    device: device.clone(),
                    command,
                    source,
                }
            })?);
            let mut r = Reader::new(&resp);
            let hdr = (|| Ok::<_, super::wire::Short>((r.u16()?, r.u32()?, r.u32()?)))();
            let (_, _, rc) = hdr.map_err(|source| CommandError::Malformed { command, source })?;
            match rc {
                0 => return Ok(Zeroizing::new(resp[10..].to_vec())),
                RC_RETRY | RC_YIELDED | RC_TESTING if attempt < RETRIES => {
                    std::thread::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)));
                }
                _ => {
                    return Err(CommandError::Refused {
                        device,
                        command,
                        rc,
                        meaning: meaning(rc),
                    });
                }
            }
        }
    }

    /// TPM2_CreatePrimary in the owner hierarchy; returns the transient handle.
    pub fn create_primary(&mut self, template: &[u8]) -> Result<u32, CommandError> {
        let mut c = Command::new(ST_SESSIONS, CC_CREATE_PRIMARY);
        c.u32(RH_OWNER).auth_session(RS_PW);
        c.tpm2b(&build(|s| {
            s.u16(0).u16(0); // userAuth, data
        }));
        c.tpm2b(template).u16(0).u32(0); // outsideInfo, creationPCR
        let resp = self.execute("TPM2_CreatePrimary", c.finish())?;
        Reader::new(&resp)
            .u32()
            .map_err(|source| CommandError::Malformed {
                command: "TPM2_CreatePrimary",
                source,
            })
    }

    /// TPM2_Create of a sealed data object; returns (TPM2B_PRIVATE, TPM2B_PUBLIC) with sizes.
    pub fn create_sealed(
        &mut self,
        parent: u32,
        template: &[u8],
        data: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), CommandError> {
        let mut c = Command::new(ST_SESSIONS, CC_CREATE);
        c.u32(parent).auth_session(RS_PW);
        let sensitive = Zeroizing::new(build(|s| {
            s.u16(0).tpm2b(data);
        }));
        c.tpm2b(&sensitive).tpm2b(template).u16(0).u32(0);
        let resp = self.execute("TPM2_Create", c.finish())?;
        let parse = || {
            let mut r = Reader::new(&resp);
            r.u32()?; // parameterSize
            Ok((r.tpm2b_with_size()?.to_vec(), r.tpm2b_with_size()?.to_vec()))
        };
        parse().map_err(|source| CommandError::Malformed {
            command: "TPM2_Create",
            source,
        })
    }

    /// TPM2_Load of a (private, public) pair under `parent`; returns the object handle.
    pub fn load(
        &mut self,
        parent: u32,
        private: &[u8],
        public: &[u8],
    ) -> Result<u32, CommandError> {
        let mut c = Command::new(ST_SESSIONS, CC_LOAD);
        c.u32(parent).auth_session(RS_PW).raw(private).raw(public);
        let resp = self.execute("TPM2_Load", c.finish())?;
        Reader::new(&resp)
            .u32()
            .map_err(|source| CommandError::Malformed {
                command: "TPM2_Load",
                source,
            })
    }

    /// TPM2_StartAuthSession: an unbound, unsalted policy session hashing with `hash`.
    pub fn start_policy_session(&mut self, hash: u16, nonce: &[u8]) -> Result<u32, CommandError> {
        let mut c = Command::new(ST_NO_SESSIONS, CC_START_AUTH_SESSION);
        c.u32(RH_NULL)
            .u32(RH_NULL)
            .tpm2b(nonce)
            .u16(0)
            .u8(0x01)
            .u16(ALG_NULL)
            .u16(hash);
        let resp = self.execute("TPM2_StartAuthSession", c.finish())?;
        Reader::new(&resp)
            .u32()
            .map_err(|source| CommandError::Malformed {
                command: "TPM2_StartAuthSession",
                source,
            })
    }

    /// TPM2_PolicyPCR with the PCRs' current values (empty pcrDigest).
    pub fn policy_pcr(&mut self, session: u32, selection: &[u8]) -> Result<(), CommandError> {
        let mut c = Command::new(ST_NO_SESSIONS, CC_POLICY_PCR);
        c.u32(session).u16(0).raw(selection);
        self.execute("TPM2_PolicyPCR", c.finish()).map(drop)
    }

    /// TPM2_Unseal, authorized by `session` (a policy session, or the password session).
    pub fn unseal(&mut self, item: u32, session: u32) -> Result<Zeroizing<Vec<u8>>, CommandError> {
        let mut c = Command::new(ST_SESSIONS, CC_UNSEAL);
        c.u32(item).auth_session(session);
        let resp = self.execute("TPM2_Unseal", c.finish())?;
        let mut r = Reader::new(&resp);
        let parse = |r: &mut Reader| -> Result<Zeroizing<Vec<u8>>, super::wire::Short> {
            r.u32()?;
            Ok(Zeroizing::new(r.tpm2b()?.to_vec()))
        };
        parse(&mut r).map_err(|source| CommandError::Malformed {
            command: "TPM2_Unseal",
            source,
        })
    }

    /// TPM2_PCR_Read of `pcrs` in `bank`, ascending; several reads if the TPM returns a part.
    pub fn pcr_read(&mut self, bank: u16, pcrs: &[u8]) -> Result<Vec<Vec<u8>>, CommandError> {
        let mut wanted: Vec<u8> = pcrs.to_vec();
        wanted.sort_unstable();
        let mut values: Vec<(u8, Vec<u8>)> = Vec::new();
        // A TPM returns at most 8 digests per read: 24 PCRs need at most 3 rounds.
        for _ in 0..24 {
            let left: Vec<u8> = wanted
                .iter()
                .copied()
                .filter(|p| !values.iter().any(|(q, _)| q == p))
                .collect();
            if left.is_empty() {
                break;
            }
            let mut c = Command::new(ST_NO_SESSIONS, CC_PCR_READ);
            c.raw(&pcr_selection(bank, &left));
            let resp = self.execute("TPM2_PCR_Read", c.finish())?;
            let parse = || -> Result<Vec<(u8, Vec<u8>)>, super::wire::Short> {
                let mut r = Reader::new(&resp);
                r.u32()?; // pcrUpdateCounter
                let mut got = Vec::new();
                for _ in 0..r.u32()? {
                    let _bank = r.u16()?;
                    let n = r.u8()? as usize;
                    let map = r.bytes(n)?;
                    for (i, byte) in map.iter().enumerate() {
                        (0..8)
                            .filter(|b| byte & (1 << b) != 0)
                            .for_each(|b| got.push((i * 8 + b) as u8));
                    }
                }
                let count = r.u32()? as usize;
                let mut out = Vec::new();
                for pcr in got.into_iter().take(count) {
                    out.push((pcr, r.tpm2b()?.to_vec()));
                }
                Ok(out)
            };
            let got = parse().map_err(|source| CommandError::Malformed {
                command: "TPM2_PCR_Read",
                source,
            })?;
            if got.is_empty() {
                return Err(CommandError::Refused {
                    device: self.transport.describe(),
                    command: "TPM2_PCR_Read",
                    rc: 0,
                    meaning: "the bank does not hold the requested PCRs (is the bank allocated?)",
                });
            }
            values.extend(got);
        }
        values.sort_by_key(|(p, _)| *p);
        Ok(values.into_iter().map(|(_, v)| v).collect())
    }

    /// TPM2_FlushContext; errors are ignored (the handle may already be gone).
    pub fn flush(&mut self, handle: u32) {
        let mut c = Command::new(ST_NO_SESSIONS, CC_FLUSH_CONTEXT);
        c.u32(handle);
        let _ = self.execute("TPM2_FlushContext", c.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecc_primary_template_is_the_documented_26_bytes() {
        let want = "0023000b000300720000000600800043001000030010".to_string() + "00000000";
        assert_eq!(
            hex::encode(primary_template(PrimaryKey::Ecc, ALG_SHA256)),
            want
        );
    }

    #[test]
    fn pcr7_selection_uses_three_bitmap_bytes() {
        assert_eq!(
            hex::encode(pcr_selection(ALG_SHA256, &[7])),
            "00000001000b03800000"
        );
        assert_eq!(
            hex::encode(pcr_selection(ALG_SHA1, &[0, 23])),
            "00000001000403010080"
        );
    }

    #[test]
    fn sealed_template_carries_policy_and_attributes() {
        let t = sealed_template(ALG_SHA256, None);
        assert_eq!(hex::encode(&t), "0008000b000004d2000000100000");
        let t = sealed_template(ALG_SHA256, Some(&[0xAA; 32]));
        assert_eq!(hex::encode(&t[..10]), "0008000b000004920020");
    }
}
