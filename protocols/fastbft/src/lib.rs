//! # FastBFT: a speculative BFT protocol as a sans-IO [`dst_sim::Node`]: work in progress.
