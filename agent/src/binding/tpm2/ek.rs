//! The endorsement key's public part and its fingerprint, for the inventory: the key
//! the TCG default RSA 2048 template gives in the endorsement hierarchy (what
//! `tpm2_createek -G rsa` makes), as a DER SubjectPublicKeyInfo and its SHA-256 — the
//! same bytes `tpm2_createek -f der` writes, so an orchestrator can match them.

use super::commands::{ek_rsa_template, Tpm, RH_ENDORSEMENT};
use super::wire::Reader;
use super::{transport, TpmLocation};
use sha2::{Digest as _, Sha256};

const ALG_RSA: u16 = 0x0001;
const ALG_NULL: u16 = 0x0010;

/// The endorsement key as the inventory reports it.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct EndorsementKey {
    /// `rsa2048` (the TCG default template L-1).
    pub algorithm: String,
    /// SHA-256 of the public key as DER SubjectPublicKeyInfo, lowercase hex.
    pub sha256: String,
}

/// Creates the EK from the default template on the TPM at `loc`, reads its public part
/// and flushes it (nothing stays loaded or stored).
pub fn endorsement_key(loc: &TpmLocation) -> Result<EndorsementKey, String> {
    let mut tpm = Tpm::new(transport::open(loc).map_err(|e| e.to_string())?);
    let (handle, public) = tpm
        .create_primary_in(RH_ENDORSEMENT, &ek_rsa_template())
        .map_err(|e| e.to_string())?;
    tpm.flush(handle);
    let spki = rsa_spki(&public)?;
    Ok(EndorsementKey {
        algorithm: "rsa2048".into(),
        sha256: hex::encode(Sha256::digest(&spki)),
    })
}

/// The DER SubjectPublicKeyInfo of an RSA TPMT_PUBLIC.
pub fn rsa_spki(public: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("the TPM's EK public area is malformed: {what}");
    let mut r = Reader::new(public);
    let kind = r.u16().map_err(|_| bad("no type"))?;
    if kind != ALG_RSA {
        return Err(bad(&format!("type 0x{kind:04x}, not RSA")));
    }
    r.u16()
        .and_then(|_| r.u32())
        .map_err(|_| bad("no nameAlg"))?; // nameAlg, attributes
    r.tpm2b().map_err(|_| bad("no authPolicy"))?;
    if r.u16().map_err(|_| bad("no symmetric"))? != ALG_NULL {
        r.u16()
            .and_then(|_| r.u16())
            .map_err(|_| bad("symmetric"))?; // keyBits, mode
    }
    if r.u16().map_err(|_| bad("no scheme"))? != ALG_NULL {
        r.u16().map_err(|_| bad("scheme"))?; // hashAlg
    }
    r.u16().map_err(|_| bad("no keyBits"))?;
    let exponent = match r.u32().map_err(|_| bad("no exponent"))? {
        0 => 65537,
        e => e,
    };
    let modulus = r.tpm2b().map_err(|_| bad("no modulus"))?;
    if modulus.is_empty() {
        return Err(bad("empty modulus"));
    }
    let rsa_key = der(
        0x30,
        &[integer(modulus), integer(&exponent.to_be_bytes())].concat(),
    );
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ), // rsaEncryption
            der(0x05, &[]),
        ]
        .concat(),
    );
    let key_bits = der(0x03, &[&[0u8][..], &rsa_key].concat());
    Ok(der(0x30, &[algorithm, key_bits].concat()))
}

/// A DER INTEGER of the unsigned big-endian `n`.
fn integer(n: &[u8]) -> Vec<u8> {
    let first = n.iter().position(|&b| b != 0).unwrap_or(n.len() - 1);
    let n = &n[first..];
    if n[0] & 0x80 != 0 {
        der(0x02, &[&[0u8][..], n].concat())
    } else {
        der(0x02, n)
    }
}

/// A DER TLV.
fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imprint_tests::swtpm::Swtpm;

    #[test]
    fn the_fingerprint_is_what_tpm2_createek_writes_for_the_same_tpm() {
        let tpm = Swtpm::start();
        let ours = endorsement_key(&TpmLocation::Tcp(tpm.addr())).unwrap();
        let theirs = tpm.ek_sha256();
        assert_eq!(ours.sha256, theirs);
        assert_eq!(ours.algorithm, "rsa2048");
        // The same TPM gives the same key again.
        assert_eq!(
            endorsement_key(&TpmLocation::Tcp(tpm.addr())).unwrap(),
            ours
        );
    }

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(integer(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(der(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert!(rsa_spki(&[0x00, 0x23]).unwrap_err().contains("not RSA"));
    }
}
