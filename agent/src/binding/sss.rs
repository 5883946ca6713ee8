//! Shamir secret sharing over GF(p) as the clevis sss pin does it: a fresh 256-bit safe
//! prime p, a random polynomial of degree t-1 whose constant term is the A256GCM key, one
//! point `x‖y` (32 bytes each, big-endian) per child pin; recovery by Lagrange at 0.

use super::jose::{self, JoseError, Jwe};
use num_bigint::BigUint;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Why sharing or recovering failed.
#[derive(Debug, thiserror::Error)]
pub enum SssError {
    #[error("threshold {t} is impossible with {n} pin(s); it must be between 1 and {n}")]
    Threshold { t: usize, n: usize },
    #[error("the JWE is not a clevis sss JWE: {0}")]
    NotSssJwe(String),
    #[error("only {got} of the {t} required pins could be decrypted: {failures}")]
    NotEnough {
        got: usize,
        t: usize,
        failures: String,
    },
    #[error("a child pin returned {0} bytes, not an x‖y point of 64 bytes")]
    BadShare(usize),
    #[error("no 256-bit safe prime found in the bounded search (the RNG is broken?)")]
    NoPrime,
    #[error(transparent)]
    Jose(#[from] JoseError),
}

const BYTES: usize = 32;

fn be32(n: &BigUint) -> Zeroizing<[u8; BYTES]> {
    let b = n.to_bytes_be();
    let mut out = Zeroizing::new([0u8; BYTES]);
    out[BYTES - b.len()..].copy_from_slice(&b);
    out
}

fn random_below(p: &BigUint) -> Result<BigUint, SssError> {
    // Draw exactly as many bits as p has: each draw is accepted with probability > 1/2.
    let bits = p.bits() as usize;
    let mut buf = Zeroizing::new(vec![0u8; bits.div_ceil(8)]);
    for _ in 0..256 {
        jose::random_bytes(&mut buf[..])?;
        if !bits.is_multiple_of(8) {
            buf[0] &= (1u8 << (bits % 8)) - 1;
        }
        let n = BigUint::from_bytes_be(&buf[..]);
        if &n < p {
            return Ok(n);
        }
    }
    Err(SssError::NoPrime)
}

const SMALL_PRIMES: [u32; 53] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193,
    197, 199, 211, 223, 227, 229, 233, 239, 241, 251,
];

/// Miller-Rabin with `rounds` random bases.
fn probably_prime(n: &BigUint, rounds: usize) -> Result<bool, SssError> {
    let one = BigUint::from(1u8);
    let two = BigUint::from(2u8);
    let n1 = n - &one;
    let s = n1.trailing_zeros().unwrap_or(0);
    let d = &n1 >> s;
    for _ in 0..rounds {
        let a = random_below(&(n - 3u8))? + &two;
        let mut x = a.modpow(&d, n);
        if x == one || x == n1 {
            continue;
        }
        let mut witness = true;
        for _ in 1..s {
            x = x.modpow(&two, n);
            if x == n1 {
                witness = false;
                break;
            }
        }
        if witness {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A random 256-bit safe prime p = 2q + 1 (q prime), as OpenSSL's `BN_generate_prime_ex(safe=1)`.
pub fn safe_prime() -> Result<BigUint, SssError> {
    let mut buf = [0u8; BYTES];
    for _ in 0..200_000 {
        jose::random_bytes(&mut buf)?;
        buf[0] |= 0x80; // 256 bits exactly
        buf[BYTES - 1] |= 0x03; // p ≡ 3 (mod 4), so q = (p-1)/2 is odd
        let p = BigUint::from_bytes_be(&buf);
        let q: BigUint = &p >> 1;
        let sieved = SMALL_PRIMES.iter().all(|r| {
            let qr = (&q % *r).iter_u32_digits().next().unwrap_or(0);
            qr != 0 && !(2 * qr + 1).is_multiple_of(*r)
        });
        if !sieved || BigUint::from(2u8).modpow(&(&p - 1u8), &p) != BigUint::from(1u8) {
            continue;
        }
        if probably_prime(&q, 32)? && probably_prime(&p, 32)? {
            return Ok(p);
        }
    }
    Err(SssError::NoPrime)
}

/// A secret split into shares: the key (constant term), the prime, and one `x‖y` per pin.
pub struct Split {
    pub p: BigUint,
    pub key: Zeroizing<[u8; BYTES]>,
    pub shares: Vec<Zeroizing<Vec<u8>>>,
}

/// Splits a fresh random key into `n` shares, any `t` of which recover it.
pub fn split(t: usize, n: usize) -> Result<Split, SssError> {
    if t == 0 || t > n {
        return Err(SssError::Threshold { t, n });
    }
    let p = safe_prime()?;
    let coeffs = (0..t)
        .map(|_| random_below(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut xs: Vec<BigUint> = Vec::new();
    let mut shares = Vec::new();
    while xs.len() < n {
        let x = random_below(&p)?;
        // x = 0 would hand out the key itself; a repeated x would waste a share.
        if x == BigUint::ZERO || xs.contains(&x) {
            continue;
        }
        // Horner: y = e0 + x(e1 + x(e2 + …)).
        let y = coeffs
            .iter()
            .rev()
            .fold(BigUint::ZERO, |acc, c| (acc * &x + c) % &p);
        let mut share = Zeroizing::new(Vec::with_capacity(2 * BYTES));
        share.extend_from_slice(&be32(&x)[..]);
        share.extend_from_slice(&be32(&y)[..]);
        shares.push(share);
        xs.push(x);
    }
    Ok(Split {
        key: be32(&coeffs[0]),
        p,
        shares,
    })
}

/// Recovers the key from `t` (or more; the first are used) distinct `x‖y` shares.
pub fn combine(
    p: &BigUint,
    shares: &[Zeroizing<Vec<u8>>],
) -> Result<Zeroizing<[u8; BYTES]>, SssError> {
    // Lagrange needs a field: p = 0 or 1 would divide by zero or underflow below.
    if p.bits() < 2 || p.bits() > 8 * BYTES as u64 {
        return Err(SssError::NotSssJwe(format!(
            "the prime {p} is not a modulus of 2 to 256 bits"
        )));
    }
    let mut points = Vec::new();
    for s in shares {
        if s.len() != 2 * BYTES {
            return Err(SssError::BadShare(s.len()));
        }
        points.push((
            BigUint::from_bytes_be(&s[..BYTES]) % p,
            BigUint::from_bytes_be(&s[BYTES..]) % p,
        ));
    }
    // f(0) = Σ y_i · Π_{j≠i} x_j / (x_j − x_i)   (mod p; inverses by Fermat, p is prime)
    let mut acc = BigUint::ZERO;
    for (i, (xi, yi)) in points.iter().enumerate() {
        let (mut num, mut den) = (BigUint::from(1u8), BigUint::from(1u8));
        for (j, (xj, _)) in points.iter().enumerate() {
            if i != j {
                num = num * xj % p;
                den = den * ((xj + p - xi) % p) % p;
            }
        }
        let inv = den.modpow(&(p - 2u8), p);
        acc = (acc + yi * num % p * inv) % p;
    }
    Ok(be32(&acc))
}

/// The sss JWE: the payload encrypted under the key, the children in the header.
pub fn jwe(split: &Split, t: usize, children: &[Jwe], plaintext: &[u8]) -> Result<Jwe, SssError> {
    let header = json!({
        "alg": "dir",
        "enc": "A256GCM",
        "clevis": {"pin": "sss", "sss": {
            "t": t,
            "p": jose::b64(&be32(&split.p)[..]),
            "jwe": children.iter().map(Jwe::to_compact).collect::<Vec<_>>(),
        }},
    });
    Ok(Jwe::seal(&header, &split.key, plaintext)?)
}

/// The threshold, prime and child JWEs of an sss JWE header.
pub fn parse(hdr: &Value) -> Result<(usize, BigUint, Vec<Jwe>), SssError> {
    let sss = &hdr["clevis"]["sss"];
    let t = sss["t"]
        .as_u64()
        .filter(|t| *t >= 1)
        .ok_or_else(|| SssError::NotSssJwe("clevis.sss.t missing".into()))? as usize;
    let p = jose::unb64(sss["p"].as_str().unwrap_or(""), "clevis.sss.p")?;
    if p.len() != BYTES {
        return Err(SssError::NotSssJwe(format!(
            "clevis.sss.p is {} bytes, expected 32",
            p.len()
        )));
    }
    let p = BigUint::from_bytes_be(&p);
    if p.bits() < 2 || !p.bit(0) {
        return Err(SssError::NotSssJwe(format!(
            "clevis.sss.p is {p}, not an odd prime"
        )));
    }
    let children = sss["jwe"]
        .as_array()
        .ok_or_else(|| SssError::NotSssJwe("clevis.sss.jwe missing".into()))?
        .iter()
        .map(|c| match c {
            Value::String(s) => Ok(Jwe::from_compact(s)?),
            other => Ok(Jwe::from_flattened(other)?),
        })
        .collect::<Result<Vec<_>, SssError>>()?;
    if t > children.len() {
        return Err(SssError::Threshold {
            t,
            n: children.len(),
        });
    }
    Ok((t, p, children))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_prime_is_256_bits_and_q_is_prime() {
        let p = safe_prime().unwrap();
        assert_eq!(p.bits(), 256);
        assert!(probably_prime(&p, 40).unwrap());
        assert!(probably_prime(&(&p >> 1), 40).unwrap());
        assert!(
            !probably_prime(&BigUint::from(561u32), 20).unwrap(),
            "a Carmichael number is composite"
        );
    }

    #[test]
    fn a_zero_or_one_prime_is_refused_not_a_division_by_zero() {
        let share = Zeroizing::new(vec![1u8; 2 * BYTES]);
        for p in [0u8, 1] {
            let err = combine(&BigUint::from(p), std::slice::from_ref(&share)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("the prime {p} is not")),
                "{err}"
            );
            // The same prime as a JWE header carries it (32 big-endian bytes).
            let mut raw = [0u8; BYTES];
            raw[BYTES - 1] = p;
            let hdr = json!({"clevis": {"pin": "sss", "sss": {"t": 1, "p": jose::b64(&raw), "jwe": ["a..b.c.d"]}}});
            let err = parse(&hdr).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("clevis.sss.p is {p}, not an odd prime")),
                "{err}"
            );
        }
    }

    #[test]
    fn any_t_shares_recover_the_key_fewer_do_not() {
        let s = split(2, 3).unwrap();
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let shares: Vec<_> = pair.iter().map(|i| s.shares[*i].clone()).collect();
            assert_eq!(*combine(&s.p, &shares).unwrap(), *s.key);
        }
        assert_ne!(*combine(&s.p, &s.shares[..1]).unwrap(), *s.key);
        let one = split(1, 2).unwrap();
        assert_eq!(*combine(&one.p, &one.shares[1..]).unwrap(), *one.key);
        assert!(matches!(
            split(3, 2),
            Err(SssError::Threshold { t: 3, n: 2 })
        ));
    }
}
