//! Single-server membership changes (Ongaro's thesis, chapter 4) in the real simulator:
//! scripted changes driven through the administrator's path ([`Raft::propose_change`]) by
//! a wrapper node, random churn under fault profiles with every oracle and Raft's
//! invariants, and a deliberately broken rejoin caught by the agreement oracle.

mod common;

use common::{check_agreement, completed, run_raft, run_with, seeds, KvRaft, Run};
use dst_checkers::linearizability::CheckConfig;
use dst_protocols::harness::{check_kv_run, RunFacts};
use dst_protocols::{KvStore, Observation};
use dst_raft::{ClusterMonitor, Member, MembershipChange, Raft, RaftConfig, RaftTimer, Role};
use dst_sim::{ClientId, Effect, Node, NodeCtx, NodeId, MS, SEC};

/// One step of an administrator's script, tried by whichever node leads.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// From this time on, until the change is in the leader's configuration.
    Change {
        at_ns: u64,
        change: MembershipChange,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum AdminTimer {
    Inner(RaftTimer),
    Script,
}

const SCRIPT_TICK_NS: u64 = 20 * MS;

/// Hosts a Raft node and plays an administrator: while it leads, it proposes the script's
/// next change until its configuration shows the change. With `amnesiac_rejoin` it is the
/// deliberately broken variant: a machine back from a wipe boots as if on its first disk
/// (old incarnation, no rejoin), i.e. a replaced machine rejoining with amnesia.
struct Admin {
    inner: KvRaft,
    script: Vec<Step>,
    next: usize,
    amnesiac_rejoin: bool,
}

impl Admin {
    fn new(id: NodeId, script: Vec<Step>, amnesiac_rejoin: bool) -> Self {
        // Node 0 times out first, so it leads the first term and the scripts know who
        // leads.
        let mut config = RaftConfig::default();
        if id == NodeId(0) {
            config.election_timeout_min_ns = 60 * MS;
            config.election_timeout_max_ns = 70 * MS;
        }
        Admin {
            inner: Raft::for_service(config, KvStore::new()),
            script,
            next: 0,
            amnesiac_rejoin,
        }
    }

    fn drive(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        handler: impl FnOnce(&mut KvRaft, &mut NodeCtx<'_, KvRaft>),
    ) {
        let inner = &mut self.inner;
        let effects = ctx.nest::<KvRaft>(None, |nested| handler(inner, nested));
        for effect in effects {
            ctx.emit(match effect {
                Effect::Send { to, msg } => Effect::Send { to, msg },
                Effect::Broadcast { msg } => Effect::Broadcast { msg },
                Effect::Reply { client, reply } => Effect::Reply { client, reply },
                Effect::SetTimer {
                    id,
                    delay_ns,
                    timer,
                } => Effect::SetTimer {
                    id,
                    delay_ns,
                    timer: AdminTimer::Inner(timer),
                },
                Effect::CancelTimer { id } => Effect::CancelTimer { id },
                Effect::Sync { up_to } => Effect::Sync { up_to },
                Effect::Observe(observation) => Effect::Observe(observation),
            });
        }
    }

    fn on_script_tick(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        ctx.set_timer(SCRIPT_TICK_NS, AdminTimer::Script);
        let Some(Step::Change { at_ns, change }) = self.script.get(self.next).copied() else {
            return;
        };
        if ctx.now_ns() < at_ns || self.inner.role() != Role::Leader {
            return;
        }
        let members = self.inner.members();
        let done = match change {
            MembershipChange::Remove(member) => !members.contains(member),
            MembershipChange::Add(member) | MembershipChange::Rejoin(member) => {
                members.contains(member)
            }
        };
        if done {
            self.next += 1;
            return;
        }
        // Refusals (a change in progress, a learner catching up) are retried next tick.
        self.drive(ctx, |node, nested| {
            let _ = node.propose_change(nested, change);
        });
    }
}

impl Node for Admin {
    type Msg = <KvRaft as Node>::Msg;
    type Timer = AdminTimer;
    type Request = <KvRaft as Node>::Request;
    type Reply = <KvRaft as Node>::Reply;
    type Obs = <KvRaft as Node>::Obs;

    fn on_start(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        ctx.set_timer(SCRIPT_TICK_NS, AdminTimer::Script);
        self.drive(ctx, |node, nested| node.on_start(nested));
    }

    fn on_restart(&mut self, ctx: &mut NodeCtx<'_, Self>) {
        ctx.set_timer(SCRIPT_TICK_NS, AdminTimer::Script);
        if self.amnesiac_rejoin {
            // The bug: an empty disk after a restart is treated as a first boot.
            self.drive(ctx, |node, nested| node.on_start(nested));
        } else {
            self.drive(ctx, |node, nested| node.on_restart(nested));
        }
    }

    fn on_message(&mut self, ctx: &mut NodeCtx<'_, Self>, from: NodeId, msg: Self::Msg) {
        self.drive(ctx, |node, nested| node.on_message(nested, from, msg));
    }

    fn on_timer(&mut self, ctx: &mut NodeCtx<'_, Self>, timer: AdminTimer) {
        match timer {
            AdminTimer::Inner(timer) => {
                self.drive(ctx, |node, nested| node.on_timer(nested, timer))
            }
            AdminTimer::Script => self.on_script_tick(ctx),
        }
    }

    fn on_request(
        &mut self,
        ctx: &mut NodeCtx<'_, Self>,
        client: ClientId,
        request: Self::Request,
    ) {
        self.drive(ctx, |node, nested| node.on_request(nested, client, request));
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.inner.check_invariants()
    }
}

fn member(node: u32) -> Member {
    Member::new(NodeId(node), 0)
}

fn remove(at_ms: u64, node: u32) -> Step {
    Step::Change {
        at_ns: at_ms * MS,
        change: MembershipChange::Remove(member(node)),
    }
}

fn add(at_ms: u64, node: u32) -> Step {
    Step::Change {
        at_ns: at_ms * MS,
        change: MembershipChange::Add(member(node)),
    }
}

fn run_admin(run: &Run, script: Vec<Step>) -> common::Outcome<Admin> {
    run_with(run, move |id| Admin::new(id, script.clone(), false))
}

fn admins(outcome: &common::Outcome<Admin>, nodes: u32) -> Vec<&KvRaft> {
    (0..nodes)
        .filter_map(|id| outcome.sim.node(NodeId(id)))
        .map(|admin| &admin.inner)
        .collect()
}

/// Commits reported after `after_ns` and before the quiet phase (at 5 s) restarts every
/// crashed node.
fn commits_after(observations: &[(u64, common::KvObs)], after_ns: u64) -> usize {
    observations
        .iter()
        .filter(|(time_ns, obs)| {
            *time_ns > after_ns
                && *time_ns < QUIET_AT_NS
                && matches!(obs, Observation::Commit { .. })
        })
        .count()
}

const QUIET_AT_NS: u64 = 5 * SEC;

fn leaders_after(observations: &[(u64, common::KvObs)], after_ns: u64) -> Vec<NodeId> {
    observations
        .iter()
        .filter_map(|(time_ns, obs)| match obs {
            Observation::NewView { node, .. } if *time_ns > after_ns => Some(*node),
            _ => None,
        })
        .collect()
}

/// Five voters, two removed one at a time: three remain, and two of them are a majority.
/// With nodes 2, 3 and 4 down the cluster still commits, which the original five-node
/// configuration could not.
#[test]
fn removing_followers_shrinks_the_quorum_and_the_cluster_keeps_committing() {
    let mut run = Run::new(1, "none");
    run.nodes = 5;
    run.requests_per_client = 400;
    run.plan = "at 1500ms crash 2; at 1500ms crash 3; at 1500ms crash 4";
    let outcome = run_admin(&run, vec![remove(200, 4), remove(200, 3)]);
    check_agreement(&outcome.observations).unwrap_or_else(|error| panic!("{error}"));
    let nodes = admins(&outcome, 5);
    let expected = [member(0), member(1), member(2)];
    for node in nodes.iter().filter(|node| node.id().0 < 2) {
        assert_eq!(node.members().voters(), expected, "{}", node.id());
    }
    assert!(
        commits_after(&outcome.observations, 1600 * MS) > 0,
        "no commits with a majority of the three remaining voters"
    );
    assert_eq!(
        completed(&outcome.observations),
        800,
        "every request completed"
    );
    ClusterMonitor::new()
        .observe(&nodes)
        .unwrap_or_else(|error| panic!("{error}"));
    // The control: without the removals, three crashes of five stop the commits.
    let control = run_admin(&run, Vec::new());
    assert_eq!(
        commits_after(&control.observations, 1600 * MS),
        0,
        "five voters committed with two up"
    );
}

/// The leader removes itself: it keeps replicating until the configuration commits, then
/// steps down; it never stands again, and a new leader is elected among the rest.
#[test]
fn a_removed_leader_steps_down_and_the_rest_elect_a_new_one() {
    let mut run = Run::new(2, "none");
    run.nodes = 5;
    run.requests_per_client = 200;
    let outcome = run_admin(&run, vec![remove(300, 0)]);
    check_agreement(&outcome.observations).unwrap_or_else(|error| panic!("{error}"));
    let nodes = admins(&outcome, 5);
    assert_eq!(
        leaders_after(&outcome.observations, 0).first(),
        Some(&NodeId(0)),
        "node 0 led first"
    );
    let later = leaders_after(&outcome.observations, 300 * MS);
    assert!(!later.is_empty(), "nobody was elected after the removal");
    assert!(
        !later.contains(&NodeId(0)),
        "the removed node stood again: {later:?}"
    );
    assert_ne!(nodes[0].role(), Role::Leader, "node 0 still leads");
    for node in &nodes {
        assert!(
            !node.members().contains(member(0)),
            "{}: {:?}",
            node.id(),
            node.members()
        );
        assert_eq!(node.members().len(), 4, "{}", node.id());
    }
    assert_eq!(
        completed(&outcome.observations),
        400,
        "every request completed"
    );
    ClusterMonitor::new()
        .observe(&nodes)
        .unwrap_or_else(|error| panic!("{error}"));
}

/// A removed server that missed writes is added back: it catches up as a learner first,
/// then votes and counts. With two other voters down, commits need it.
#[test]
fn a_removed_server_added_back_catches_up_then_counts() {
    let mut run = Run::new(3, "none");
    run.nodes = 5;
    run.requests_per_client = 400;
    run.raft.snapshot_threshold_entries = 16;
    run.plan = "at 400ms crash 2; at 1200ms restart 2; at 2500ms crash 3; at 2500ms crash 4";
    let outcome = run_admin(&run, vec![remove(200, 2), add(600, 2)]);
    check_agreement(&outcome.observations).unwrap_or_else(|error| panic!("{error}"));
    let nodes = admins(&outcome, 5);
    for node in nodes.iter().filter(|node| node.id().0 < 3) {
        assert_eq!(
            node.members().len(),
            5,
            "{}: {:?}",
            node.id(),
            node.members()
        );
    }
    assert!(
        commits_after(&outcome.observations, 2600 * MS) > 0,
        "no commits with node 2 counted among three of five"
    );
    assert_eq!(
        completed(&outcome.observations),
        800,
        "every request completed"
    );
    ClusterMonitor::new()
        .observe(&nodes)
        .unwrap_or_else(|error| panic!("{error}"));
}

/// A machine back from a wipe must not rejoin under its old identity: with no memory of
/// its votes and acknowledgements it can elect a leader that lacks committed entries. The
/// deliberately broken variant (an empty disk after a restart boots as a first disk) is
/// caught by the agreement oracle; the real Raft, on the same schedule, stalls the minority
/// side instead and commits nothing different.
#[test]
fn deliberately_broken_amnesiac_rejoin_is_caught_and_incarnations_prevent_it() {
    // Node 0 leads and commits with node 1 while node 2 is cut off; node 1 is wiped, then
    // at once node 0 is cut off, and nodes 1 and 2 (both with empty logs) could elect a leader.
    let plan =
        "at 0ms partition 0,1 | 2; at 1s wipe 1; at 1s heal; at 1s partition 0 | 1,2; at 3s heal";
    let mut caught = 0;
    for seed in 0..3 {
        let mut run = Run::new(seed, "none");
        run.plan = plan;
        run.requests_per_client = 300;
        run.reads_per_mille = 0;
        let broken = run_with(&run, |id| Admin::new(id, Vec::new(), true));
        if let Err(error) = check_agreement(&broken.observations) {
            assert!(error.contains("slot"), "unexpected report: {error}");
            caught += 1;
        }
        let correct = run_admin(&run, Vec::new());
        check_agreement(&correct.observations)
            .unwrap_or_else(|error| panic!("seed {seed}: the real Raft broke: {error}"));
        let nodes = admins(&correct, 3);
        let rejoined = nodes[1];
        assert_ne!(
            rejoined.incarnation(),
            0,
            "seed {seed}: node 1 kept its old identity"
        );
        assert!(
            nodes[0].members().contains(rejoined.member()),
            "seed {seed}: node 1 rejoined after the heal: {:?}",
            nodes[0].members()
        );
    }
    assert_eq!(caught, 3, "the oracle missed an amnesiac rejoin");
}

fn live_nodes(outcome: &common::Outcome<common::KvRaft>, nodes: u32) -> Vec<&common::KvRaft> {
    (0..nodes)
        .filter_map(|id| outcome.sim.node(NodeId(id)))
        .collect()
}

/// Runs `seeds` seeds of `profile` with churn every `churn_ms` and checks every oracle.
/// Returns how many configuration changes the runs committed in total.
fn churn_runs(profile: &'static str, nodes: u32, churn_ms: u64, seed_count: u64) -> u64 {
    let mut changes = 0;
    let first = common::env_or("DST_SEED", 0);
    for seed in first..first + seed_count {
        let mut run = Run::new(seed, profile);
        run.nodes = nodes;
        run.requests_per_client = common::env_or("DST_REQUESTS", 60);
        run.raft.membership_churn_ns = churn_ms * MS;
        let outcome = run_raft(&run);
        let reproduce =
            format!("DST_SEED={seed} profile {profile} nodes {nodes} churn {churn_ms} ms");
        check_agreement(&outcome.observations)
            .unwrap_or_else(|error| panic!("{reproduce}: {error}"));
        assert!(
            outcome.summary.invariant_failures.is_empty(),
            "{reproduce}: {:?}",
            outcome.summary.invariant_failures
        );
        let nodes_now = live_nodes(&outcome, nodes);
        ClusterMonitor::new()
            .observe(&nodes_now)
            .unwrap_or_else(|error| panic!("{reproduce}: {error}"));
        if std::env::var("DST_VERBOSE").is_ok() {
            eprintln!(
                "{reproduce}: {:?} ignored {:?}\n  faults {:?}",
                outcome.summary.end_reason,
                outcome.summary.stats.ignored,
                outcome.summary.fault_log
            );
            for node in &nodes_now {
                eprintln!(
                    "  {} {:?} {:?} term {} inc {} rejoining {} members {:?}@{} commit {} last {}",
                    node.id(),
                    node.status(),
                    node.role(),
                    node.current_term().0,
                    node.incarnation(),
                    node.is_rejoining(),
                    node.members().voters(),
                    node.members_index().0,
                    node.commit_index().0,
                    node.last_index().0
                );
            }
        }
        let request_corrupted = outcome.summary.stats.corrupt_delivered > 0;
        let facts = RunFacts::from_summary(nodes, &outcome.summary);
        let verdict = check_kv_run(&outcome.observations, &facts, &CheckConfig::default());
        assert!(
            request_corrupted || verdict.is_clean(),
            "{reproduce}: {:?}",
            verdict.violations
        );
        assert!(
            request_corrupted || outcome.summary.clients_pending.iter().all(|p| *p == 0),
            "{reproduce}: clients pending {:?}",
            outcome.summary.clients_pending
        );
        changes += nodes_now
            .iter()
            .map(|node| node.configs_applied())
            .max()
            .unwrap_or(0);
        if std::env::var("DST_VERBOSE").is_ok() {
            eprintln!(
                "{reproduce}: completed {} changes {changes}",
                completed(&outcome.observations)
            );
        }
    }
    changes
}

#[test]
fn churn_under_light_faults_keeps_every_oracle_clean() {
    let changes = churn_runs("light", 5, 300, seeds(4));
    assert!(changes > 0, "churn changed nothing");
}

#[test]
fn churn_under_heavy_faults_keeps_every_oracle_clean() {
    let changes = churn_runs("heavy", 5, 300, seeds(4));
    assert!(changes > 0, "churn changed nothing");
}

#[test]
fn churn_under_swarm_keeps_every_oracle_clean() {
    churn_runs("swarm", 5, 300, seeds(4));
    churn_runs("swarm", 4, 300, seeds(2));
}

#[test]
fn churn_under_partitions_clocks_storage_and_corruption_keeps_every_oracle_clean() {
    for profile in ["partitions", "clocks", "storage", "corruption"] {
        churn_runs(profile, 5, 300, seeds(2));
    }
}
