//! Leader rotation orders for leader-based BFT protocols.
//!
//! PBFT, HotStuff and FastBFT rotate leadership through all replicas, one view (or tenure)
//! each. Twins (Bano et al.) gets much of its power from choosing *which* replica leads
//! when, for example a twinned replica first. A protocol that takes a `leader_order` seed
//! rotates through a permutation of the replicas drawn from it instead of `0, 1, ..., n-1`:
//! every replica still leads once in every `n` consecutive turns (so liveness arguments
//! that rely on a correct leader within `f + 1` turns are unchanged), and every replica and
//! client computes the same leader from the same seed. Seed 0 is the identity order.

use dst_sim::decision::splitmix64;
use dst_sim::NodeId;

/// The leader of `turn` (a view, or a HotStuff tenure) among `n` replicas under the rotation
/// order drawn from `order_seed` (0: replica `turn mod n`).
pub fn rotation_leader(order_seed: u64, n: u32, turn: u64) -> NodeId {
    let n = n.max(1);
    let position = (turn % u64::from(n)) as u32;
    if order_seed == 0 {
        return NodeId(position);
    }
    NodeId(permutation(order_seed, n)[position as usize])
}

/// The rotation order itself: a permutation of `0..n` (Fisher-Yates on a SplitMix64 stream).
pub fn permutation(order_seed: u64, n: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n).collect();
    let mut state = order_seed;
    for index in (1..order.len()).rev() {
        state = splitmix64(state);
        // Modulo bias is irrelevant here: any agreed permutation is a valid order.
        let pick = (state % (index as u64 + 1)) as usize;
        order.swap(index, pick);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_is_round_robin() {
        for turn in 0..20 {
            assert_eq!(rotation_leader(0, 4, turn), NodeId((turn % 4) as u32));
        }
    }

    #[test]
    fn every_replica_leads_once_in_every_n_turns() {
        for seed in 1..50 {
            for n in [1u32, 4, 7] {
                for start in 0..3 * u64::from(n) {
                    let mut leaders: Vec<u32> = (start..start + u64::from(n))
                        .map(|turn| rotation_leader(seed, n, turn).0)
                        .collect();
                    leaders.sort_unstable();
                    assert_eq!(leaders, (0..n).collect::<Vec<_>>(), "seed {seed} n {n}");
                }
            }
        }
    }

    #[test]
    fn seeds_choose_different_orders() {
        let orders: std::collections::BTreeSet<Vec<u32>> =
            (1..100).map(|seed| permutation(seed, 4)).collect();
        assert_eq!(orders.len(), 24, "all 4! orders are reachable");
    }
}
