//! The handful of TPM2 commands the clevis tpm2 pin needs, marshalled by hand, and the
//! object templates clevis (tpm2-tools defaults) uses, byte for byte.

use super::transport::Transport;
use super::wire::{build, Command, Reader, RS_PW, ST_NO_SESSIONS, ST_SESSIONS};
use std::time::Duration;
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
/// TPM_RH_ENDORSEMENT: the hierarchy of the endorsement key.
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;
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
    #[error("the TPM's response to {command} is malformed: {what}")]
    Invalid { command: &'static str, what: String },
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

/// TPMA_OBJECT of the TCG default EK (EK Credential Profile, template L-1):
/// fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt.
const EK_ATTRS: u32 = 0x0003_00B2;
/// PolicySecret(TPM_RH_ENDORSEMENT), the authPolicy of the TCG default EK templates.
const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// The TCG default RSA 2048 EK template (L-1), as `tpm2_createek -G rsa` creates it:
/// the same TPM always gives the same key from it.
pub fn ek_rsa_template() -> Vec<u8> {
    build(|c| {
        c.u16(ALG_RSA)
            .u16(ALG_SHA256)
            .u32(EK_ATTRS)
            .tpm2b(&EK_POLICY);
        c.u16(ALG_AES).u16(128).u16(ALG_CFB).u16(ALG_NULL); // symmetric, scheme
        c.u16(2048).u32(0).tpm2b(&[0u8; 256]); // keyBits, exponent, unique (zeros)
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

/// The size of a digest of `bank`, for the banks imprint seals to.
fn digest_size(bank: u16) -> Option<usize> {
    match bank {
        ALG_SHA1 => Some(20),
        ALG_SHA256 => Some(32),
        _ => None,
    }
}

/// The (PCR, digest) pairs of a TPM2_PCR_Read response (after the header) to a read of
/// `asked` in `bank`. The TPM may return fewer PCRs than asked, but only PCRs asked for,
/// each once, in that bank, one digest of the bank's size each, and nothing after them.
fn parse_pcr_read(
    resp: &[u8],
    bank: u16,
    asked: &[u8],
) -> Result<Vec<(u8, Vec<u8>)>, CommandError> {
    const CMD: &str = "TPM2_PCR_Read";
    let invalid = |what: String| CommandError::Invalid { command: CMD, what };
    let short = |source| CommandError::Malformed {
        command: CMD,
        source,
    };
    let mut r = Reader::new(resp);
    r.u32().map_err(short)?; // pcrUpdateCounter
    let mut got: Vec<u8> = Vec::new();
    for _ in 0..r.u32().map_err(short)? {
        let sel_bank = r.u16().map_err(short)?;
        let n = r.u8().map_err(short)? as usize;
        let map = r.bytes(n).map_err(short)?;
        for (i, byte) in map.iter().enumerate() {
            for b in (0..8).filter(|b| byte & (1 << b) != 0) {
                let pcr = i * 8 + b;
                if sel_bank != bank {
                    return Err(invalid(format!(
                        "PCR {pcr} of bank 0x{sel_bank:04X}, asked for bank 0x{bank:04X}"
                    )));
                }
                let Some(pcr) = u8::try_from(pcr).ok().filter(|p| asked.contains(p)) else {
                    return Err(invalid(format!("PCR {pcr} was not asked for")));
                };
                if got.contains(&pcr) {
                    return Err(invalid(format!("PCR {pcr} is selected twice")));
                }
                got.push(pcr);
            }
        }
    }
    let count = r.u32().map_err(short)? as usize;
    if count != got.len() {
        return Err(invalid(format!(
            "{count} digests for {} selected PCRs",
            got.len()
        )));
    }
    let mut out = Vec::with_capacity(got.len());
    for pcr in got {
        let digest = r.tpm2b().map_err(short)?;
        if let Some(want) = digest_size(bank).filter(|w| *w != digest.len()) {
            return Err(invalid(format!(
                "the digest of PCR {pcr} has {} bytes, not {want}",
                digest.len()
            )));
        }
        out.push((pcr, digest.to_vec()));
    }
    if r.remaining() != 0 {
        return Err(invalid(format!(
            "{} bytes after the digests",
            r.remaining()
        )));
    }
    Ok(out)
}

/// A TPM reached through a transport.
pub struct Tpm {
    transport: Box<dyn Transport>,
    retry_pause: Duration,
}

impl Tpm {
    /// Wraps a transport.
    pub fn new(transport: Box<dyn Transport>) -> Tpm {
        Tpm {
            transport,
            retry_pause: Duration::from_millis(50),
        }
    }

    /// Sets the pause before the n-th resend of a command the TPM asked to retry
    /// (n × `pause`; 50 ms by default). The fuzzer replays responses without pausing.
    pub fn with_retry_pause(mut self, pause: Duration) -> Tpm {
        self.retry_pause = pause;
        self
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
            let (tag, size, rc) =
                hdr.map_err(|source| CommandError::Malformed { command, source })?;
            let invalid = |what: String| CommandError::Invalid { command, what };
            if size as usize != resp.len() {
                return Err(invalid(format!(
                    "its header says {size} bytes, {} arrived",
                    resp.len()
                )));
            }
            // A success answers a command with sessions with sessions (parameterSize
            // first), one without without.
            let want = u16::from_be_bytes([cmd[0], cmd[1]]);
            if rc == 0 && tag != want {
                return Err(invalid(format!("tag 0x{tag:04X}, expected 0x{want:04X}")));
            }
            match rc {
                0 => return Ok(Zeroizing::new(resp[10..].to_vec())),
                RC_RETRY | RC_YIELDED | RC_TESTING if attempt < RETRIES => {
                    std::thread::sleep(self.retry_pause * attempt);
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
        let resp = self.create_primary_raw(RH_OWNER, template)?;
        Reader::new(&resp)
            .u32()
            .map_err(|source| CommandError::Malformed {
                command: "TPM2_CreatePrimary",
                source,
            })
    }

    /// TPM2_CreatePrimary in `hierarchy` (empty authorization); returns the transient
    /// handle and the TPMT_PUBLIC of the key created.
    pub fn create_primary_in(
        &mut self,
        hierarchy: u32,
        template: &[u8],
    ) -> Result<(u32, Vec<u8>), CommandError> {
        let resp = self.create_primary_raw(hierarchy, template)?;
        let mut r = Reader::new(&resp);
        // objectHandle, then (with sessions) parameterSize, then outPublic.
        (|| Ok((r.u32()?, r.u32().and_then(|_| r.tpm2b())?.to_vec())))().map_err(|source| {
            CommandError::Malformed {
                command: "TPM2_CreatePrimary",
                source,
            }
        })
    }

    /// TPM2_CreatePrimary's response after the header.
    fn create_primary_raw(
        &mut self,
        hierarchy: u32,
        template: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CommandError> {
        let mut c = Command::new(ST_SESSIONS, CC_CREATE_PRIMARY);
        c.u32(hierarchy).auth_session(RS_PW);
        c.tpm2b(&build(|s| {
            s.u16(0).u16(0); // userAuth, data
        }));
        c.tpm2b(template).u16(0).u32(0); // outsideInfo, creationPCR
        self.execute("TPM2_CreatePrimary", c.finish())
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
            let mut p = Reader::new(&resp).parameters()?;
            Ok((p.tpm2b_with_size()?.to_vec(), p.tpm2b_with_size()?.to_vec()))
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
        let parse = || -> Result<Zeroizing<Vec<u8>>, super::wire::Short> {
            Ok(Zeroizing::new(
                Reader::new(&resp).parameters()?.tpm2b()?.to_vec(),
            ))
        };
        parse().map_err(|source| CommandError::Malformed {
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
            let got = parse_pcr_read(&resp, bank, &left)?;
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
    use std::collections::VecDeque;

    /// A TPM that gives canned responses, then fails.
    struct Canned(VecDeque<Vec<u8>>);

    impl Transport for Canned {
        fn transact(&mut self, _command: &[u8]) -> std::io::Result<Vec<u8>> {
            self.0
                .pop_front()
                .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
        }
        fn describe(&self) -> String {
            "canned".into()
        }
    }

    fn tpm(responses: Vec<Vec<u8>>) -> Tpm {
        Tpm::new(Box::new(Canned(responses.into()))).with_retry_pause(Duration::ZERO)
    }

    /// A response: tag, size (of all of it), rc, then `body`.
    fn response(tag: u16, rc: u32, body: &[u8]) -> Vec<u8> {
        let mut r = tag.to_be_bytes().to_vec();
        r.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
        r.extend_from_slice(&rc.to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    /// A TPM2_PCR_Read response body: one selection of `bank` with bitmap `map`, then
    /// the digests as given.
    fn pcr_read_body(bank: u16, map: &[u8], digests: &[&[u8]]) -> Vec<u8> {
        build(|c| {
            c.u32(0x14).u32(1).u16(bank).u8(map.len() as u8).raw(map);
            c.u32(digests.len() as u32);
            digests.iter().for_each(|d| {
                c.tpm2b(d);
            });
        })
    }

    fn invalid(e: CommandError) -> String {
        assert!(matches!(e, CommandError::Invalid { .. }), "{e}");
        e.to_string()
    }

    #[test]
    fn pcr_read_refuses_digests_of_the_wrong_size() {
        // Found by the tpm2_responses fuzz target: PCR 1's digest size zeroed in an
        // 8-PCR read. PCRs 1-7 used to read as empty digests (224 bytes left over) and
        // the policy was computed from them.
        let mut body = hex::decode("0000001400000001000b03ff000000000008").unwrap();
        for pcr in 0..8 {
            body.extend_from_slice(if pcr == 1 { &[0, 0] } else { &[0, 32] });
            let mut digest = [0u8; 32];
            if pcr == 0 {
                digest[30..].copy_from_slice(&[0x61, 0x06]);
            }
            body.extend_from_slice(&digest);
        }
        let resp = response(ST_NO_SESSIONS, 0, &body);
        assert_eq!(resp.len(), 300);
        let e = tpm(vec![resp]).pcr_read(ALG_SHA256, &(0..8).collect::<Vec<_>>());
        let e = invalid(e.unwrap_err());
        assert!(e.contains("PCR 1 has 0 bytes, not 32"), "{e}");
    }

    #[test]
    fn pcr_read_takes_only_the_pcrs_bank_and_digests_asked_for() {
        let d32 = [7u8; 32];
        let ok = pcr_read_body(ALG_SHA256, &[0x80, 0, 0], &[&d32]);
        let got = tpm(vec![response(ST_NO_SESSIONS, 0, &ok)]).pcr_read(ALG_SHA256, &[7]);
        assert_eq!(got.unwrap(), vec![d32.to_vec()]);

        // PCR 263: bit 7 of the 33rd bitmap byte (it used to wrap around to PCR 7).
        let mut wide = vec![0u8; 33];
        wide[32] = 0x80;
        let cases: [(Vec<u8>, &str); 5] = [
            (
                pcr_read_body(ALG_SHA256, &[0, 1, 0], &[&d32]),
                "PCR 8 was not asked for",
            ),
            (
                pcr_read_body(ALG_SHA1, &[0x80, 0, 0], &[&d32]),
                "of bank 0x0004",
            ),
            (
                pcr_read_body(ALG_SHA256, &wide, &[&d32]),
                "PCR 263 was not asked for",
            ),
            (
                pcr_read_body(ALG_SHA256, &[0x80, 0, 0], &[&d32, &d32]),
                "2 digests for 1 selected PCRs",
            ),
            ([ok.clone(), vec![0]].concat(), "1 bytes after the digests"),
        ];
        for (body, want) in cases {
            let e = tpm(vec![response(ST_NO_SESSIONS, 0, &body)]).pcr_read(ALG_SHA256, &[7]);
            let e = invalid(e.unwrap_err());
            assert!(e.contains(want), "{e}, wanted {want:?}");
        }
    }

    #[test]
    fn responses_must_agree_with_their_header() {
        let handle = 0x8000_0000u32.to_be_bytes();
        let good = response(ST_SESSIONS, 0, &handle);
        assert_eq!(
            tpm(vec![good.clone()]).create_primary(&[]).unwrap(),
            0x8000_0000
        );

        let mut long = good.clone();
        long.push(0);
        let e = invalid(tpm(vec![long]).create_primary(&[]).unwrap_err());
        assert!(e.contains("says 14 bytes, 15 arrived"), "{e}");
        let e = invalid(
            tpm(vec![good[..12].to_vec()])
                .create_primary(&[])
                .unwrap_err(),
        );
        assert!(e.contains("says 14 bytes, 12 arrived"), "{e}");
        let e = tpm(vec![response(ST_NO_SESSIONS, 0, &handle)]).create_primary(&[]);
        assert!(invalid(e.unwrap_err()).contains("tag 0x8001, expected 0x8002"));
        let e = tpm(vec![good[..7].to_vec()])
            .create_primary(&[])
            .unwrap_err();
        assert!(matches!(e, CommandError::Malformed { .. }), "{e}");

        // Errors: refused whatever their tag; "retry" is retried.
        let e = tpm(vec![response(ST_NO_SESSIONS, 0x101, &[])]).create_primary(&[]);
        assert_eq!(e.unwrap_err().base_rc(), Some(0x101));
        let retry = response(ST_NO_SESSIONS, RC_RETRY, &[]);
        let mut t = tpm(vec![retry.clone(), retry, good]);
        assert_eq!(t.create_primary(&[]).unwrap(), 0x8000_0000);
    }

    #[test]
    fn parameters_past_the_end_are_malformed() {
        // parameterSize 9 with 6 bytes left; a TPM2B claiming 5 bytes in 4.
        for body in [
            &[0, 0, 0, 9, 0, 4, 1, 2, 3, 4][..],
            &[0, 0, 0, 6, 0, 5, 1, 2, 3, 4],
        ] {
            let e = tpm(vec![response(ST_SESSIONS, 0, body)]).unseal(1, RS_PW);
            let e = e.unwrap_err();
            assert!(matches!(e, CommandError::Malformed { .. }), "{e}");
        }
        let body = [0, 0, 0, 6, 0, 4, 1, 2, 3, 4, 0, 0, 1, 0, 0];
        let got = tpm(vec![response(ST_SESSIONS, 0, &body)]).unseal(1, RS_PW);
        assert_eq!(&got.unwrap()[..], &[1, 2, 3, 4]);
    }

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
