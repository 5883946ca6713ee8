//! An image's detached signature: fetched, read, and matched to a key that may have
//! made it (the keys the document lists, else the trust root), by `preflight` before any
//! disk is touched and again by the write-image step, which then checks it over the
//! served bytes as they stream.

use super::context::Context;
use crate::oci::signature::Policy;
use crate::plan::{ImagePin, ImagePlan, RegistrySignaturePlan, SignaturePlan};
use crate::trust::detached::Checker;
use crate::trust::{root::parse_key, TrustError, TrustRoot};

/// The checker for `sig`, or why there is none.
pub fn checker(sig: &SignaturePlan, ctx: &Context) -> Result<Checker, String> {
    let keys = keys_for(&sig.keys, ctx)?;
    if keys.is_empty() {
        return Err(format!(
            "no key can check the image's signature {}: list the keys that may sign it in \
             image.signature.keys, or boot with a trust root",
            sig.url
        ));
    }
    let bytes = match crate::trust::document::fetch(&sig.url, ctx.ca_bundle) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(format!("the image's signature {} does not exist", sig.url)),
        Err(e) => return Err(format!("fetching the image's signature {}: {e}", sig.url)),
    };
    Checker::new(&keys, &bytes).map_err(|e| {
        let why = match e {
            TrustError::Untrusted { signer, trusted } if !sig.keys.is_empty() => format!(
                "signed by key {signer}, which is not one of the keys image.signature.keys lists ({trusted})"
            ),
            e => e.to_string(),
        };
        format!("the image's signature {}: {why}", sig.url)
    })
}

/// An image pinned by its signature alone (no digest) is accepted only from a signed
/// document: otherwise whoever can change the document can change the pin.
pub fn digest_rule(img: &ImagePlan, ctx: &Context) -> Result<(), String> {
    if !pinned(img) && !ctx.document_signed {
        return Err(
            "the image has no digest and the document is not signed: an image may be pinned by \
             its signature alone only in a signed document (give image.sha256, or sign the document)"
                .into(),
        );
    }
    Ok(())
}

/// Whether the document pins the image's bytes itself: a digest, or an `oci://`
/// reference's manifest digest (the same trust: the manifest names the layer digest).
fn pinned(img: &ImagePlan) -> bool {
    img.digest.is_some() || matches!(img.pin, ImagePin::Manifest { .. })
}

/// A tag pinned by its registry signature alone may be checked with the document's own
/// keys only when the document is signed: otherwise whoever could change the document
/// could change the keys with it (the trust root's keys are always fine).
pub fn registry_rule(
    img: &ImagePlan,
    sig: &RegistrySignaturePlan,
    ctx: &Context,
) -> Result<(), String> {
    if !sig.keys.is_empty() && !pinned(img) && !ctx.document_signed {
        return Err(format!(
            "{} is a tag without a digest and the document is not signed, yet image.signature.keys lists the keys \
             that may sign it: whoever could change the document could change the keys with it. Leave the keys \
             to the trust root, pin the manifest digest (@sha256:<manifest digest>) or give image.sha256, or sign the document",
            img.urls[0]
        ));
    }
    Ok(())
}

/// How the registry signatures of `sig` are checked: its lookaside store and the keys
/// the document lists (else the trust root's), of which one must be OpenPGP.
pub fn registry_policy(sig: &RegistrySignaturePlan, ctx: &Context) -> Result<Policy, String> {
    let listed = !sig.keys.is_empty();
    let keys = keys_for(&sig.keys, ctx)?;
    if !keys.has_openpgp() {
        return Err(format!(
            "no OpenPGP key can check the image's registry signatures in {}: list the OpenPGP certificates \
             that may sign it in image.signature.keys, or boot with a trust root that holds them",
            sig.lookaside
        ));
    }
    Ok(Policy {
        lookaside: sig.lookaside.clone(),
        keys,
        listed,
        ca_bundle: ctx.ca_bundle.map(std::path::Path::to_path_buf),
    })
}

/// The keys `image.signature.keys` lists, parsed; without any, the trust root's.
fn keys_for(listed: &[String], ctx: &Context) -> Result<TrustRoot, String> {
    if listed.is_empty() {
        return Ok(ctx.trust.clone());
    }
    let parsed = listed
        .iter()
        .enumerate()
        .map(|(i, k)| parse_key(k.as_bytes(), &format!("image.signature.keys[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(TrustRoot::new(parsed))
}
