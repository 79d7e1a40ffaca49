//! Replica messages whose checksum belongs to their encoding.
//!
//! On the wire a [`Sealed`] message is `postcard(body) ++ varint(checksum)`: the checksum
//! covers the body's encoding (0 when checksums are off), so a corrupted message that still
//! decodes into a well-formed body is rejected. A sender seals a body ([`Seal::Fresh`]) and
//! the checksum is computed only if the message is ever encoded; a message decoded from bytes
//! carries the checksum it arrived with ([`Seal::Received`]), which [`Sealed::verify`]
//! checks. A message handed over without encoding (the simulator's intact hops) is the
//! sender's own value: it needs no check, and neither side pays for the hash. The bytes are
//! the same as those of a struct with a stored checksum field.
//!
//! So a body changed in memory after sealing is, in effect, sealed anew. Damage in transit is
//! modelled where it happens, on the encoded bytes (the simulator's corrupting hops); a test
//! that wants a stale checksum sets [`Seal::Received`] itself.
//!
//! The checksum is FNV-1a with a per-protocol seed ([`Checksummed::CHECKSUM_SEED`]). It is
//! not cryptographic: it detects accidents (bit flips, truncations), not adversaries.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::digest::try_hash_value;

/// A message body that travels sealed.
pub trait Checksummed: Serialize {
    /// Seeds the checksum, so that one protocol's bytes never verify as another's.
    const CHECKSUM_SEED: u64;
}

/// A message between replicas: the body and its seal (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed<B> {
    pub body: B,
    pub seal: Seal,
}

/// Where a message's checksum comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// Checksums are off: encodes as 0.
    Off,
    /// Sealed by its sender: encodes as the checksum of the body.
    Fresh,
    /// Decoded from bytes, with this checksum.
    Received(u64),
}

impl<B: Checksummed> Sealed<B> {
    /// Wraps a body, sealed when `with_checksum`.
    pub fn seal(body: B, with_checksum: bool) -> Self {
        let seal = if with_checksum {
            Seal::Fresh
        } else {
            Seal::Off
        };
        Sealed { body, seal }
    }

    /// The checksum this message encodes with.
    pub fn checksum(&self) -> u64 {
        match self.seal {
            Seal::Off => 0,
            Seal::Fresh => body_checksum(&self.body),
            Seal::Received(checksum) => checksum,
        }
    }

    /// True if the checksum matches the body (or checksums are off). A message its sender
    /// sealed passes: its checksum is by definition the body's.
    pub fn verify(&self, with_checksum: bool) -> bool {
        if !with_checksum {
            return true;
        }
        match self.seal {
            Seal::Off => false,
            Seal::Fresh => true,
            Seal::Received(checksum) => checksum == body_checksum(&self.body),
        }
    }
}

/// Never 0 for an encodable body, so a zeroed checksum never verifies. A body that cannot be
/// encoded cannot have come from an honest sender (senders encode the same type): 0.
fn body_checksum<B: Checksummed>(body: &B) -> u64 {
    try_hash_value(B::CHECKSUM_SEED, body).map_or(0, |hash| hash | 1)
}

/// The checksum is a function of the body except in a corrupted message, and the trace
/// records corruption as decisions: hashing the body tells runs apart, and does not make
/// every send pay for the checksum.
impl<B: Hash> Hash for Sealed<B> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.body.hash(state);
    }
}

impl<B: Checksummed> Serialize for Sealed<B> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Sealed", 2)?;
        fields.serialize_field("body", &self.body)?;
        fields.serialize_field("checksum", &self.checksum())?;
        fields.end()
    }
}

impl<'de, B: Deserialize<'de>> Deserialize<'de> for Sealed<B> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The encoded shape.
        #[derive(Deserialize)]
        #[serde(rename = "Sealed")]
        struct Wire<B> {
            body: B,
            checksum: u64,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(Sealed {
            body: wire.body,
            seal: Seal::Received(wire.checksum),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    enum Body {
        Vote { term: u64, candidate: u32 },
        Heartbeat,
    }

    impl Checksummed for Body {
        const CHECKSUM_SEED: u64 = 0x7465_7374;
    }

    type Msg = Sealed<Body>;

    fn vote(term: u64) -> Body {
        Body::Vote { term, candidate: 2 }
    }

    fn decode(bytes: &[u8]) -> Msg {
        postcard::from_bytes(bytes).expect("decodes")
    }

    #[test]
    fn a_sealed_message_encodes_its_body_then_the_body_checksum() {
        let checksum = crate::digest::hash_bytes(
            Body::CHECKSUM_SEED,
            &postcard::to_allocvec(&vote(4)).unwrap(),
        ) | 1;
        let expected = postcard::to_allocvec(&(vote(4), checksum)).unwrap();
        assert_eq!(
            postcard::to_allocvec(&Msg::seal(vote(4), true)).unwrap(),
            expected
        );
        let expected_off = postcard::to_allocvec(&(vote(4), 0u64)).unwrap();
        let off = Msg::seal(vote(4), false);
        assert_eq!(postcard::to_allocvec(&off).unwrap(), expected_off);
    }

    #[test]
    fn a_decoded_message_is_checked_against_the_checksum_it_carried() {
        let bytes = postcard::to_allocvec(&Msg::seal(vote(4), true)).unwrap();
        let decoded = decode(&bytes);
        assert_eq!(
            decoded.seal,
            Seal::Received(Msg::seal(vote(4), true).checksum())
        );
        assert!(decoded.verify(true));
        // The term is the byte after the variant tag: 4 becomes 5, still well formed.
        let mut flipped = bytes.clone();
        flipped[1] ^= 1;
        let forged = decode(&flipped);
        assert_eq!(forged.body, vote(5));
        assert!(
            !forged.verify(true),
            "a changed body passed its old checksum"
        );
        assert!(forged.verify(false), "checksums off accept what decodes");
        let unsealed = decode(&postcard::to_allocvec(&Msg::seal(vote(4), false)).unwrap());
        assert!(
            !unsealed.verify(true),
            "a message sent without a checksum passed one"
        );
        let heartbeat = decode(&postcard::to_allocvec(&Msg::seal(Body::Heartbeat, true)).unwrap());
        assert!(heartbeat.verify(true));
    }

    #[test]
    fn the_trace_hash_of_a_message_is_its_body_hash() {
        let hash = |msg: &Msg| dst_sim::stable_hash(msg);
        let fresh = Msg::seal(vote(4), true);
        let received = decode(&postcard::to_allocvec(&fresh).unwrap());
        assert_eq!(hash(&fresh), hash(&received));
        assert_eq!(hash(&fresh), dst_sim::stable_hash(&vote(4)));
        assert_ne!(hash(&fresh), hash(&Msg::seal(vote(5), true)));
    }
}
