//! Latent storage damage (bit flips found on read, misdirected writes) reaches at most
//! `damaged_disks_max` disks in a run; the other disks are spared it, not other faults.

use dst_sim::decision::SeededSource;
use dst_sim::engine::NoClient;
use dst_sim::{ClientId, FaultProfile, Node, NodeCtx, NodeId, Sim, SimConfig, MS, SEC};

/// Writes a key and reads it back every millisecond, forever.
struct Scribbler {
    round: u64,
}

impl Node for Scribbler {
    type Msg = ();
    type Timer = ();
    type Request = ();
    type Reply = ();
    type Obs = ();

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        ctx.set_timer(MS, ());
    }

    fn on_message(&mut self, _ctx: &mut NodeCtx<'_, Self>, _from: NodeId, _msg: ()) {}

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, _timer: ()) {
        self.round += 1;
        let key = format!("k{}", self.round % 4);
        // Errors are faults this test does not look at.
        let _ = ctx.write(&key, self.round.to_le_bytes());
        let _ = ctx.read(&key);
        ctx.sync();
        ctx.set_timer(MS, ());
    }

    fn on_request(&mut self, ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {
        ctx.ignore("serves no clients");
    }
}

/// How many of five disks were damaged, with the given bound (None: the default).
fn damaged_disks(bound: Option<u32>, seed: u64) -> usize {
    let mut profile = FaultProfile::named("none", &mut SeededSource::new(0)).expect("profile");
    profile.storage.read_corrupt_ppm = 2_000;
    profile.storage.misdirect_ppm = 2_000;
    let mut config = SimConfig::new(5, 0, profile);
    if let Some(bound) = bound {
        config.damaged_disks_max = bound;
    }
    config.quiet_at_ns = 2 * SEC;
    config.end_ns = 2 * SEC;
    let factory = Box::new(|_| Scribbler { round: 0 });
    let mut sim: Sim<Scribbler, NoClient<Scribbler>> =
        Sim::new(config, factory, vec![], SeededSource::new(seed), false);
    sim.run();
    (0..5)
        .filter(|&node| sim.storage(NodeId(node)).damaged())
        .count()
}

#[test]
fn damage_reaches_at_most_a_minority_of_disks_by_default() {
    for seed in 1..=10 {
        // Without a bound, every disk is hit in a second of a write and a read per ms.
        assert_eq!(damaged_disks(Some(5), seed), 5, "seed {seed}: unbounded");
        assert_eq!(damaged_disks(None, seed), 2, "seed {seed}: default bound");
        assert_eq!(damaged_disks(Some(1), seed), 1, "seed {seed}: bound 1");
        assert_eq!(damaged_disks(Some(0), seed), 0, "seed {seed}: bound 0");
    }
}
