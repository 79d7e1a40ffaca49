//! # PBFT (Castro and Liskov, OSDI 1999) as a sans-IO [`dst_sim::Node`]: work in progress.
