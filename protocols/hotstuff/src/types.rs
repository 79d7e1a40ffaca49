//! Wire and storage types: rounds, blocks, quorum and timeout certificates, messages.

use dst_protocols::Request;
use dst_sim::{Digest, NodeId, Principal, Signature, Signed};
use serde::{Deserialize, Serialize};

/// A round (the paper's view number). Round 0 belongs to the genesis block.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Round(pub u64);

impl Round {
    /// The round after this one (saturating: a corrupted huge round never wraps).
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for Round {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "r{}", self.0)
    }
}

/// A client request as replicas carry it: signed by its client.
pub type ClientRequest<C> = Signed<Request<C>>;

/// Domain separators, so a signature over one kind of statement never verifies as another.
const VOTE_DOMAIN: &str = "hotstuff/vote";
const TIMEOUT_DOMAIN: &str = "hotstuff/timeout";
const PROPOSAL_DOMAIN: &str = "hotstuff/proposal";

/// What a vote signs: "block `block` is valid in round `round`".
pub fn vote_digest(round: Round, block: &Digest) -> Digest {
    Digest::of(&(VOTE_DOMAIN, round.0, block))
}

/// What a timeout signs: "I give up on `round`; my highest QC is of round `high_qc_round`".
pub fn timeout_digest(round: Round, high_qc_round: Round) -> Digest {
    Digest::of(&(TIMEOUT_DOMAIN, round.0, high_qc_round.0))
}

/// What a leader signs when proposing a block.
pub fn proposal_digest(block: &Digest) -> Digest {
    Digest::of(&(PROPOSAL_DOMAIN, block))
}

/// A quorum certificate: `2f + 1` votes of distinct replicas for `(round, block)`. The
/// genesis QC (round 0, the genesis block, no votes) is valid by definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Qc {
    pub round: Round,
    pub block: Digest,
    pub votes: Vec<Signature>,
}

impl Qc {
    /// The certificate of the genesis block.
    pub fn genesis(genesis: Digest) -> Qc {
        Qc {
            round: Round(0),
            block: genesis,
            votes: Vec::new(),
        }
    }

    /// Cheap identity of what the QC certifies.
    pub fn key(&self) -> (Round, Digest) {
        (self.round, self.block)
    }
}

/// One replica's timeout in a timeout certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeoutVote {
    pub high_qc_round: Round,
    pub signature: Signature,
}

/// A timeout certificate: `2f + 1` distinct replicas gave up on `round`. A proposal for
/// `round` leads to (see `HotStuff::round_after_tc`) carries it when its QC is older.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tc {
    pub round: Round,
    pub timeouts: Vec<TimeoutVote>,
}

impl Tc {
    /// The highest QC round any signer reported: a proposal justified by this TC must
    /// carry a QC at least this high.
    pub fn high_qc_round(&self) -> Round {
        self.timeouts
            .iter()
            .map(|timeout| timeout.high_qc_round)
            .max()
            .unwrap_or_default()
    }
}

/// A block of the chain. Its identity is [`Block::digest`], the hash of all of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block<C> {
    pub round: Round,
    /// Distance from genesis (genesis is 0).
    pub height: u64,
    /// The parent's digest; always the block `justify` certifies.
    pub parent: Digest,
    pub justify: Qc,
    pub proposer: NodeId,
    pub requests: Vec<ClientRequest<C>>,
}

impl<C: Serialize> Block<C> {
    /// The block's identity.
    pub fn digest(&self) -> Digest {
        Digest::of(self)
    }
}

impl<C> Block<C> {
    /// The genesis block every replica starts from.
    pub fn genesis() -> Block<C> {
        Block {
            round: Round(0),
            height: 0,
            parent: Digest::ZERO,
            justify: Qc::genesis(Digest::ZERO),
            proposer: NodeId(0),
            requests: Vec::new(),
        }
    }
}

/// Replica-to-replica messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message<C> {
    /// The leader of `block.round` proposes `block`; `signature` is its signature over
    /// [`proposal_digest`] of the block's digest. `tc` justifies a round after timeouts.
    Propose {
        block: Block<C>,
        tc: Option<Tc>,
        signature: Signature,
    },
    /// A vote for `(round, block)`, sent to the leader of `round + 1`.
    Vote {
        round: Round,
        block: Digest,
        signature: Signature,
    },
    /// The sender gave up on `round`; carries its highest QC. Broadcast.
    Timeout {
        round: Round,
        high_qc: Qc,
        signature: Signature,
    },
    /// Client requests relayed to the leaders.
    Forward { requests: Vec<ClientRequest<C>> },
    /// Asks for the block `block` (at `height`) and its ancestors, newest first.
    Fetch { block: Digest, height: u64 },
    /// Blocks answering a fetch, newest first.
    Blocks { blocks: Vec<Block<C>> },
    /// Certificates sent to a replica that looks behind (its timeout carried a lower QC or
    /// a lower round).
    Certificate { qc: Qc, tc: Option<Tc> },
}

impl<C> Message<C> {
    /// Short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Propose { .. } => "propose",
            Message::Vote { .. } => "vote",
            Message::Timeout { .. } => "timeout",
            Message::Forward { .. } => "forward",
            Message::Fetch { .. } => "fetch",
            Message::Blocks { .. } => "blocks",
            Message::Certificate { .. } => "certificate",
        }
    }
}

/// Timers of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HotStuffTimer {
    /// The pacemaker's timer of `round`.
    Round { round: Round },
}

/// The replica a signature claims, if it is a replica of a cluster of `nodes`.
pub fn signer_node(signature: &Signature, nodes: u32) -> Option<NodeId> {
    match signature.signer() {
        Principal::Node(node) if node.0 < nodes => Some(node),
        _ => None,
    }
}
