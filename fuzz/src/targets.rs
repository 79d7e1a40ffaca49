//! The bodies of the fuzz targets. `fuzz/fuzz_targets/*.rs` hand libFuzzer's bytes to them;
//! `tests/fuzz_smoke.rs` (which includes this file by path) runs them over seeded random bytes
//! on every `cargo test`, on stable Rust. Each either returns or panics; a panic is a finding.
//!
//! - [`trace_decoder`]: any bytes given to the trace decoder give a trace or an error, and a
//!   decoded trace re-encodes to itself.
//! - [`history_readers`]: the Jepsen EDN and etcd readers give a history or an error naming a
//!   line of the input.
//! - [`raft_messages`], [`paxos_messages`]: any bytes given to a protocol's message decoder
//!   give a message or an error; a decoded message re-encodes to itself; and a node with
//!   message checksums off (so nothing shields its handlers) handles a stream of such
//!   messages without panicking.
//! - [`decisions`]: the bytes are the decision source of a small Raft or Multi-Paxos run under
//!   a fault profile the first byte picks, so libFuzzer's coverage feedback drives schedules
//!   and faults; every safety oracle must pass (liveness is not judged: a fuzzer may choose
//!   equal election timeouts forever, which no protocol survives).

use dst_protocols::kv::KvStore;
use dst_sim::{
    DecisionSource, Effect, Node, NodeCtx, NodeId, SeededSource, Storage, StorageFaults, Trace,
};

/// At most this many messages of one input go to a node.
const MESSAGES_MAX: usize = 16;

type RaftNode = dst_raft::Raft<KvStore>;
type PaxosNode = dst_multipaxos::MultiPaxos<KvStore>;

/// The trace decoder never panics, and what it decodes re-encodes to the same trace.
pub fn trace_decoder(data: &[u8]) {
    let Ok(trace) = Trace::from_bytes(data) else {
        return;
    };
    let again = Trace::from_bytes(&trace.to_bytes()).expect("an encoded trace decodes");
    assert_eq!(again, trace, "a decoded trace must re-encode to itself");
}

/// The history readers never panic, and their errors name a line of the input.
pub fn history_readers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    let line_in_input = |line: usize| {
        assert!(
            (1..=lines + 1).contains(&line),
            "error at line {line} of a {lines}-line input"
        );
    };
    use dst_checkers::readers::{edn, etcd};
    if let Err(error) = edn::read_kv(&text) {
        line_in_input(error.line);
    }
    if let Err(error) = edn::read_register(&text) {
        line_in_input(error.line);
    }
    if let Err(error) = edn::read_cas_register(&text) {
        line_in_input(error.line);
    }
    if let Err(error) = etcd::read(&text) {
        line_in_input(error.line);
    }
}

/// Raft's message decoder and handlers never panic on any bytes.
pub fn raft_messages(data: &[u8]) {
    let config = dst_raft::RaftConfig {
        message_checksums: false,
        ..dst_raft::RaftConfig::default()
    };
    let node = RaftNode::for_service(config, KvStore::new());
    messages_to(node, data);
}

/// Multi-Paxos's message decoder and handlers never panic on any bytes.
pub fn paxos_messages(data: &[u8]) {
    let config = dst_multipaxos::PaxosConfig {
        message_checksums: false,
        ..dst_multipaxos::PaxosConfig::default()
    };
    let node = PaxosNode::for_service(config, KvStore::new());
    messages_to(node, data);
}

/// Decodes `data` as a stream of `N::Msg` and hands each to a started node from a peer.
fn messages_to<N: Node>(mut node: N, data: &[u8])
where
    N::Msg: PartialEq,
{
    let mut host = Host::new(data);
    host.step(&mut node, |node, ctx| node.on_start(ctx));
    let mut rest = data;
    for index in 0..MESSAGES_MAX {
        let Ok((msg, after)) = postcard::take_from_bytes::<N::Msg>(rest) else {
            return;
        };
        let bytes = postcard::to_allocvec(&msg).expect("a decoded message encodes");
        let again: N::Msg = postcard::from_bytes(&bytes).expect("an encoded message decodes");
        assert_eq!(again, msg, "a decoded message must re-encode to itself");
        let from = NodeId(1 + (index as u32 % 2));
        host.step(&mut node, |node, ctx| node.on_message(ctx, from, msg));
        if after.len() == rest.len() {
            return;
        }
        rest = after;
    }
}

/// Just enough of a host to call a node's handlers: node 0 of three, a fresh disk.
struct Host {
    storage: Storage,
    decisions: SeededSource,
    next_timer_id: u64,
    now_ns: u64,
}

impl Host {
    fn new(data: &[u8]) -> Self {
        Host {
            storage: Storage::new(StorageFaults::default()),
            decisions: SeededSource::new(data.len() as u64),
            next_timer_id: 0,
            now_ns: 0,
        }
    }

    fn step<N: Node>(&mut self, node: &mut N, handler: impl FnOnce(&mut N, &mut NodeCtx<'_, N>)) {
        let mut effects: Vec<Effect<N>> = Vec::new();
        let mut ignored = Vec::new();
        self.now_ns += dst_sim::MS;
        {
            let decisions: &mut dyn DecisionSource = &mut self.decisions;
            let mut ctx = NodeCtx::new(
                NodeId(0),
                3,
                self.now_ns,
                &mut effects,
                &mut self.storage,
                decisions,
                &mut self.next_timer_id,
                &mut ignored,
            );
            handler(node, &mut ctx);
        }
        // Every write becomes durable between steps: this host never crashes.
        let up_to = self.storage.last_sequence();
        self.storage.complete_sync(up_to);
    }
}

/// Profiles the first byte of a `decisions` input picks from.
const PROFILES: [&str; 8] = [
    "none",
    "light",
    "heavy",
    "partitions",
    "clocks",
    "storage",
    "corruption",
    "swarm",
];

/// The bytes decide a small run; every safety oracle must pass.
pub fn decisions(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let profile = PROFILES[usize::from(selector) % PROFILES.len()];
    let protocol = if selector & 0x80 == 0 {
        "raft"
    } else {
        "multipaxos"
    };
    let mut spec = dst::runner::RunSpec::new(protocol, 1, profile);
    spec.nodes = 3;
    spec.clients = 2;
    spec.ops = 12;
    let source = Box::new(dst::strategy::bytes::BytesSource::new(rest));
    let outcome = dst::strategy::run_with_source(&spec, source).expect("a valid spec");
    let broken: Vec<String> = outcome
        .violations
        .iter()
        .filter(|v| v.property != "liveness")
        .map(|v| format!("[{}] {}", v.property, v.detail))
        .collect();
    assert!(
        broken.is_empty(),
        "{protocol} under {profile} broke safety: {broken:?}"
    );
}
