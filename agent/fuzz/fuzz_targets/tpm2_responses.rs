//! TPM 2.0 responses: the agent's whole clevis tpm2 sequence, sealing (CreatePrimary,
//! PCR_Read, Create, FlushContext) and unsealing (CreatePrimary, Load, StartAuthSession,
//! PolicyPCR, Unseal, FlushContext), against a TPM whose every response is cut from the
//! input. Each response must end in a value or an error, never a panic, a hang or an
//! allocation its bytes do not account for.
//!
//! Input: `flags ‖ (u16 big-endian length ‖ response)*`, one response per command sent,
//! in order (the length is the framing, so the response's own header may lie about its
//! size); when they run out the transport fails. `flags` bits 0–1 pick the PCRs (none,
//! 7, 0 and 7, all 24: several PCR_Read rounds), bit 2 the sha1 bank, bit 3 an RSA
//! primary for the fallback JWE. Sealing runs first; its JWE, or if sealing failed a
//! fixed one whose key is known, is unsealed with the responses left; then a PCR_Read of
//! the same PCRs must give one digest of the bank's size per PCR.
//!
//! Seeds (`seeds/tpm2_responses/`): swtpm's responses recorded through the TCP transport
//! to a seal and unseal with no PCR (after one TPM_RC_RETRY), PCR 7, sha1 PCRs 0 and 7
//! and all 24 PCRs; and two where CreatePrimary fails with TPM_RC_FAILURE so that the
//! fallback JWE is unsealed to its known key (PCR 7; an RSA primary).
#![no_main]
use imprint::binding::jose::{self, Jwe};
use imprint::binding::tpm2::commands::{Tpm, ALG_SHA1, ALG_SHA256};
use imprint::binding::tpm2::{self, PcrBank, Tpm2Config, Transport};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::io;
use std::time::Duration;

/// The key and plaintext of the fallback JWE: an unseal response that carries
/// `jose::oct_jwk(&FALLBACK_CEK)` opens it.
const FALLBACK_CEK: [u8; 32] = [0x5A; 32];
const FALLBACK_PLAINTEXT: &[u8] = b"imprint tpm2 fuzz";
/// What the fallback JWE names as the sealed object (TPM2B_PUBLIC, TPM2B_PRIVATE); the
/// replayed TPM loads anything.
const FALLBACK_PUB: &[u8] = &[0, 4, 0, 8, 0, 11];
const FALLBACK_PRIV: &[u8] = &[0, 2, 0xAB, 0xCD];

/// A TPM that answers each command with the next response of the input.
struct Replay {
    input: Vec<u8>,
    pos: usize,
}

impl Transport for Replay {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        // What the agent sends is well formed whatever it read before.
        assert!(command.len() >= 10, "command shorter than its header");
        let size = u32::from_be_bytes([command[2], command[3], command[4], command[5]]);
        assert_eq!(size as usize, command.len(), "command header size");
        let rest = &self.input[self.pos..];
        if rest.len() < 2 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        self.pos += 2 + n;
        Ok(rest[2..2 + n].to_vec())
    }
    fn describe(&self) -> String {
        "fuzz replay".into()
    }
}

fn fallback_jwe(cfg: &Tpm2Config, rsa: bool) -> Jwe {
    let mut t = json!({
        "hash": "sha256",
        "key": if rsa { "rsa" } else { "ecc" },
        "jwk_pub": jose::b64(FALLBACK_PUB),
        "jwk_priv": jose::b64(FALLBACK_PRIV),
    });
    if !cfg.pcrs.is_empty() {
        let ids: Vec<String> = cfg.pcrs.iter().map(u8::to_string).collect();
        t["pcr_bank"] = json!(cfg.bank.name());
        t["pcr_ids"] = json!(ids.join(","));
    }
    let header = json!({"alg": "dir", "enc": "A256GCM", "clevis": {"pin": "tpm2", "tpm2": t}});
    Jwe::seal(&header, &FALLBACK_CEK, FALLBACK_PLAINTEXT).expect("seal the fallback JWE")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, responses)) = data.split_first() else {
        return;
    };
    let pcrs: Vec<u8> = match flags & 3 {
        0 => vec![],
        1 => vec![7],
        2 => vec![0, 7],
        _ => (0..24).collect(),
    };
    let bank = if flags & 4 != 0 {
        PcrBank::Sha1
    } else {
        PcrBank::Sha256
    };
    let cfg = Tpm2Config {
        pcrs: pcrs.clone(),
        bank,
    };
    let replay = Replay {
        input: responses.to_vec(),
        pos: 0,
    };
    let mut tpm = Tpm::new(Box::new(replay)).with_retry_pause(Duration::ZERO);

    let sealed = tpm2::encrypt_with(&mut tpm, &cfg, b"fuzz");
    let jwe = match &sealed {
        Ok(jwe) => jwe.clone(),
        Err(_) => fallback_jwe(&cfg, flags & 8 != 0),
    };
    let opened = tpm2::decrypt_with(&mut tpm, &jwe);
    if let (Err(_), Ok(plaintext)) = (&sealed, &opened) {
        assert_eq!(&plaintext[..], FALLBACK_PLAINTEXT);
    }

    if !pcrs.is_empty() {
        let (alg, size) = match bank {
            PcrBank::Sha1 => (ALG_SHA1, 20),
            PcrBank::Sha256 => (ALG_SHA256, 32),
        };
        if let Ok(values) = tpm.pcr_read(alg, &pcrs) {
            assert_eq!(values.len(), pcrs.len(), "one digest per PCR");
            assert!(values.iter().all(|v| v.len() == size), "digest sizes");
        }
    }
});
