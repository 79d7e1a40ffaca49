//! The authentication model: digests and unforgeable simulated signatures.
//!
//! A [`Digest`] is SHA-256 over bytes, or over a value's canonical (postcard) encoding. A
//! [`Signature`] binds a [`Principal`] (a replica or a client) to a digest. Rules, enforced by
//! the types:
//! - only a host can mint a signature, and only for the principal its context runs as
//!   (`NodeCtx::sign`, `ClientCtx::sign`): a Byzantine node signs anything as itself and can
//!   replay any signature it has seen, but can never produce one for a correct node;
//! - verification recomputes the tag from the signer and the digest, so a signature that was
//!   corrupted in transit, moved to another payload or relabelled with another signer fails;
//! - the fields are private and the tag is keyed by a secret protocol code never sees;
//!   deserialising a signature from bytes (as every message hop may) yields a value that
//!   verifies only if it was minted for exactly that signer and digest.
//!
//! Signing and verifying through a node's context charge its virtual CPU ([`CpuCosts`]):
//! the node is busy for that long and its messages leave that much later, so comparisons
//! between signed and unsigned protocols are honest.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::decision::splitmix64;
use crate::node::{ClientId, NodeId};

/// Who signs: a replica or a client.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum Principal {
    /// Nobody: the default of a decoded value; never verifies.
    #[default]
    Unknown,
    /// A replica.
    Node(NodeId),
    /// A client.
    Client(ClientId),
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Unknown => write!(formatter, "?"),
            Principal::Node(node) => write!(formatter, "{node}"),
            Principal::Client(client) => write!(formatter, "{client}"),
        }
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest, for "nothing" (genesis, no-op predecessor).
    pub const ZERO: Digest = Digest([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// SHA-256 of a value's canonical (postcard) encoding.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Digest {
        // Serialising plain data into a Vec cannot fail; an empty encoding keeps this total.
        let bytes = postcard::to_allocvec(value).unwrap_or_default();
        Digest::of_bytes(&bytes)
    }

    /// `H(self || next)`: the hash chain of histories (`h_n = H(h_{n-1} || d_n)`).
    pub fn chain(&self, next: &Digest) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        hasher.update(next.0);
        Digest(hasher.finalize().into())
    }

    /// The first eight bytes as a number, for logs and compact keys.
    pub fn short(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("32 bytes hold 8"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "#{:016x}", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{self:?}")
    }
}

/// An unforgeable tag binding a signer to a digest. Mint one through a context; check it
/// with [`Signature::verify`] (free) or the context's `verify` (charged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signature {
    signer: Principal,
    tag: u64,
}

/// The secret the tags are keyed with. Protocol code cannot reach it: the module is the only
/// place that computes tags.
const KEY: u64 = 0x5eed_0fd5_7516_7000;

fn tag(signer: Principal, digest: &Digest) -> u64 {
    let who = match signer {
        Principal::Unknown => 0,
        Principal::Node(node) => (1u64 << 32) | u64::from(node.0),
        Principal::Client(client) => (2u64 << 32) | u64::from(client.0),
    };
    let mut state = splitmix64(KEY ^ who);
    for chunk in digest.0.chunks_exact(8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunk of 8"));
        state = splitmix64(state ^ word);
    }
    state
}

impl Signature {
    /// Mints a signature. Only hosts call this, for the principal a context runs as.
    pub(crate) fn mint(signer: Principal, digest: &Digest) -> Signature {
        Signature {
            signer,
            tag: tag(signer, digest),
        }
    }

    /// Who claims to have signed.
    pub fn signer(&self) -> Principal {
        self.signer
    }

    /// True if this signature was minted by its signer over exactly `digest`.
    pub fn verify(&self, digest: &Digest) -> bool {
        self.signer != Principal::Unknown && self.tag == tag(self.signer, digest)
    }

    /// True if `signer` signed exactly `digest`.
    pub fn verify_by(&self, signer: Principal, digest: &Digest) -> bool {
        self.signer == signer && self.verify(digest)
    }
}

/// A value with its signer's signature over [`Digest::of`] the value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signed<T> {
    pub value: T,
    pub signature: Signature,
}

impl<T: Serialize> Signed<T> {
    /// Who claims to have signed.
    pub fn signer(&self) -> Principal {
        self.signature.signer()
    }

    /// The digest the signature must cover.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.value)
    }

    /// True if the signature covers this value (no CPU charged; prefer the context's
    /// `verify_signed` in handlers).
    pub fn verify(&self) -> bool {
        self.signature.verify(&self.digest())
    }
}

/// Virtual CPU charged to a node per operation, so throughput comparisons count the cost of
/// authentication. Defaults are in the range of Ed25519 on one server core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuCosts {
    pub sign_ns: u64,
    pub verify_ns: u64,
}

impl Default for CpuCosts {
    fn default() -> Self {
        CpuCosts {
            sign_ns: 20_000,
            verify_ns: 50_000,
        }
    }
}

impl CpuCosts {
    /// No cost at all (for tests that count message delays only).
    pub const FREE: CpuCosts = CpuCosts {
        sign_ns: 0,
        verify_ns: 0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_signer_and_digest() {
        let digest = Digest::of(&("order", 1u64));
        let other = Digest::of(&("order", 2u64));
        let alice = Principal::Node(NodeId(0));
        let bob = Principal::Node(NodeId(1));
        let signature = Signature::mint(alice, &digest);
        assert!(signature.verify(&digest));
        assert!(signature.verify_by(alice, &digest));
        assert!(!signature.verify_by(bob, &digest), "wrong signer accepted");
        assert!(
            !signature.verify(&other),
            "signature moved to another payload"
        );
        let relabelled = Signature {
            signer: bob,
            tag: signature.tag,
        };
        assert!(!relabelled.verify(&digest), "relabelled signature accepted");
        let unknown = Signature::mint(Principal::Unknown, &digest);
        assert!(
            !unknown.verify(&digest),
            "an anonymous signature proves nothing"
        );
    }

    #[test]
    fn corrupted_signatures_fail() {
        let digest = Digest::of_bytes(b"payload");
        let signature = Signature::mint(Principal::Client(ClientId(3)), &digest);
        let bytes = postcard::to_allocvec(&signature).expect("encodes");
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                if let Ok(decoded) = postcard::from_bytes::<Signature>(&flipped) {
                    assert!(
                        decoded == signature || !decoded.verify(&digest),
                        "flipping bit {bit} of byte {index} forged a signature"
                    );
                }
            }
        }
    }

    #[test]
    fn digests_are_sha256_and_chain() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            Digest::of_bytes(b"abc").short(),
            u64::from_le_bytes([0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea])
        );
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        assert_ne!(a.chain(&b), b.chain(&a));
        assert_eq!(a.chain(&b), a.chain(&b));
    }

    #[test]
    fn signed_values_verify_and_detect_tampering() {
        let value = (7u64, "put x".to_string());
        let signer = Principal::Node(NodeId(2));
        let signature = Signature::mint(signer, &Digest::of(&value));
        let mut signed = Signed { value, signature };
        assert!(signed.verify());
        signed.value.0 = 8;
        assert!(!signed.verify(), "tampered value still verifies");
    }
}
