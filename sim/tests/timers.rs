//! A cancelled timer's event leaves the queue: it is never popped, never counted as an
//! event, and never offered as one of the events tied at an instant.

use std::cell::RefCell;
use std::rc::Rc;

use dst_sim::decision::{DecisionKind, DecisionSource, SeededSource};
use dst_sim::engine::NoClient;
use dst_sim::{ClientId, FaultProfile, Node, NodeCtx, NodeId, Sim, SimConfig, TieBreak, TimerId};

const TIMERS: u64 = 6;
const DELAY_NS: u64 = 1_000_000;

/// Node 0 sets `TIMERS` timers for the same instant and cancels two at once; the first to
/// fire cancels one more (by then the others are held as its ties).
#[derive(Default)]
struct Cancelling {
    timers: Vec<TimerId>,
    fired: bool,
}

impl Node for Cancelling {
    type Msg = ();
    type Timer = u64;
    type Request = ();
    type Reply = ();
    type Obs = u64;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        if ctx.id() != NodeId(0) {
            return;
        }
        self.timers = (0..TIMERS).map(|n| ctx.set_timer(DELAY_NS, n)).collect();
        ctx.cancel_timer(self.timers[1]);
        ctx.cancel_timer(self.timers[3]);
    }

    fn on_message(&mut self, _ctx: &mut NodeCtx<'_, Self>, _from: NodeId, _msg: ()) {}

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: u64) {
        ctx.observe(timer);
        if !std::mem::replace(&mut self.fired, true) {
            let victim = if timer == TIMERS - 1 { 0 } else { TIMERS - 1 };
            ctx.cancel_timer(self.timers[victim as usize]);
        }
    }

    fn on_request(&mut self, _ctx: &mut NodeCtx<'_, Self>, _client: ClientId, _request: ()) {}
}

/// Seeded decisions that note how many events each tie decision chose among.
struct CountingTies {
    inner: SeededSource,
    bounds: Rc<RefCell<Vec<u64>>>,
}

impl DecisionSource for CountingTies {
    fn choose(&mut self, kind: DecisionKind, bound: u64) -> u64 {
        if kind == DecisionKind::Tie {
            self.bounds.borrow_mut().push(bound);
        }
        self.inner.choose(kind, bound)
    }
}

fn run(tie_break: TieBreak, seed: u64) -> (u64, Vec<u64>, Vec<u64>) {
    let profile = FaultProfile::named("none", &mut SeededSource::new(1)).expect("profile");
    let mut config = SimConfig::new(1, 0, profile);
    config.tie_break = tie_break;
    let bounds = Rc::new(RefCell::new(Vec::new()));
    let source: Box<dyn DecisionSource> = Box::new(CountingTies {
        inner: SeededSource::new(seed),
        bounds: Rc::clone(&bounds),
    });
    let mut sim: Sim<Cancelling, NoClient<Cancelling>> = Sim::new(
        config,
        Box::new(|_| Cancelling::default()),
        vec![],
        source,
        false,
    );
    let summary = sim.run();
    let mut fired: Vec<u64> = sim
        .take_observations()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    fired.sort_unstable();
    let bounds = bounds.borrow().clone();
    (summary.events, fired, bounds)
}

#[test]
fn cancelled_timers_are_neither_popped_nor_tied() {
    let (events, fired, bounds) = run(TieBreak::Fifo, 1);
    // Timers 1 and 3 are cancelled at the start; timer 0 fires first and cancels timer 5.
    assert_eq!(fired, vec![0, 2, 4]);
    // The three timers and the start of the quiet phase.
    assert_eq!(events, 4, "cancelled timers counted as events");
    assert!(bounds.is_empty(), "first-in-first-out takes no decisions");
    for seed in 1..20 {
        let (events, fired, bounds) = run(TieBreak::Decide, seed);
        assert_eq!(fired.len(), 3, "seed {seed}: {fired:?}");
        assert!(
            !fired.contains(&1) && !fired.contains(&3),
            "seed {seed}: {fired:?}"
        );
        assert_eq!(events, 4, "seed {seed}: cancelled timers counted as events");
        // Four live timers tie at first, then the two left after the first one's cancel.
        assert_eq!(bounds, vec![4, 2], "seed {seed}: tie candidates");
    }
}
