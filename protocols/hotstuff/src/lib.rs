//! # Chained HotStuff (Yin et al., PODC 2019) as a sans-IO [`dst_sim::Node`]: work in progress.
