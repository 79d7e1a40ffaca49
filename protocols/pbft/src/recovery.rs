//! Crash recovery from durable records, and state transfer from a stable checkpoint.

use std::collections::BTreeMap;

use dst_protocols::Sessions;
use dst_sim::{Digest, StateMachine, StorageError};
use serde::de::DeserializeOwned;

use crate::durable::{self, CheckpointRecord, Meta, PrePrepareRecord, RecordError, StableRecord};
use crate::message::{check_checkpoint_proof, PreparedCert, Seq, StateTransfer, View};
use crate::replica::{verifier, Ctx, OwnCheckpoint, Pbft};

/// What reading one key gave.
enum Found<T> {
    Absent,
    Valid(T),
    Torn,
    Corrupt,
}

/// Reads retried after a transient I/O error before the record counts as unreadable.
const READ_ATTEMPTS_MAX: usize = 16;

fn read_retrying<S: StateMachine>(
    ctx: &mut Ctx<'_, '_, S>,
    key: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut result = ctx.read(key);
    for _ in 1..READ_ATTEMPTS_MAX {
        if result != Err(StorageError::Io) {
            break;
        }
        result = ctx.read(key);
    }
    result
}

fn load<S: StateMachine, T: DeserializeOwned>(ctx: &mut Ctx<'_, '_, S>, key: &str) -> Found<T> {
    match read_retrying(ctx, key) {
        Ok(None) => Found::Absent,
        Ok(Some(bytes)) => match durable::decode(key, &bytes) {
            Ok(value) => Found::Valid(value),
            Err(RecordError::Torn) => Found::Torn,
            Err(RecordError::Corrupt) => Found::Corrupt,
        },
        // An unreadable record may hold a promise: treat it as corrupt.
        Err(_) => Found::Corrupt,
    }
}

/// Of two alternately written copies, the valid one with the highest version; Err if a
/// copy is corrupt and none is valid (a promise may be lost).
fn load_pair<S: StateMachine, T: DeserializeOwned>(
    ctx: &mut Ctx<'_, '_, S>,
    keys: [&str; 2],
    version: impl Fn(&T) -> u64,
) -> Result<Option<T>, ()> {
    let mut best: Option<T> = None;
    let mut corrupt = false;
    for key in keys {
        match load::<S, T>(ctx, key) {
            Found::Valid(value) => {
                if best
                    .as_ref()
                    .is_none_or(|held| version(&value) > version(held))
                {
                    best = Some(value);
                }
            }
            Found::Corrupt => corrupt = true,
            Found::Absent | Found::Torn => {}
        }
    }
    match best {
        None if corrupt => Err(()),
        other => Ok(other),
    }
}

impl<S: StateMachine> Pbft<S> {
    /// Rebuilds the replica from its durable records after a crash.
    pub(crate) fn recover(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let meta = load_pair::<S, Meta>(ctx, durable::META_KEYS, |meta| meta.version);
        let stable = load_pair::<S, StableRecord>(ctx, durable::STABLE_KEYS, |s| s.version);
        let (Ok(meta), Ok(stable)) = (meta, stable) else {
            // The view or the stable checkpoint this replica promised is lost: it could
            // contradict itself, so it stays silent for good (like a crashed replica).
            self.mute = true;
            ctx.ignore("recovery: view or checkpoint record corrupt; replica muted");
            return;
        };
        if let Some(meta) = meta {
            self.meta_version = meta.version;
            self.view = meta.view;
            self.view_changing = meta.view_changing;
        }
        if let Some(stable) = stable {
            self.stable = stable;
        }
        self.recover_state(ctx);
        let pre_prepared = self.recover_pre_prepares(ctx);
        self.recover_prepared(ctx, &pre_prepared);
        self.resign_recovered_votes(ctx);
        let last_assigned = self
            .log
            .iter()
            .filter(|(_, slot)| slot.view == self.view && slot.pre_prepare.is_some())
            .map(|(seq, _)| *seq)
            .next_back()
            .unwrap_or(Seq(0));
        self.next_seq = Seq(last_assigned.max(self.stable.seq).max(self.last_executed).0 + 1);
        if self.view_changing {
            self.send_view_change(ctx);
        }
    }

    /// The service from the newest own checkpoint at or above the stable one.
    fn recover_state(&mut self, ctx: &mut Ctx<'_, '_, S>) {
        let mut seqs: Vec<Seq> = ctx
            .keys_with_prefix(durable::CHECKPOINT_PREFIX)
            .iter()
            .filter_map(|key| durable::parse_seq(durable::CHECKPOINT_PREFIX, key))
            .filter(|seq| *seq >= self.stable.seq)
            .collect();
        seqs.sort();
        while let Some(seq) = seqs.pop() {
            let key = durable::checkpoint_key(seq);
            let Found::Valid(record) = load::<S, CheckpointRecord>(ctx, &key) else {
                continue;
            };
            let digest = Digest::of_bytes(&record.snapshot);
            if record.seq != seq || (seq == self.stable.seq && digest != self.stable.digest) {
                continue;
            }
            let Ok(state) = Sessions::<S>::restore(&record.snapshot) else {
                continue;
            };
            self.state = state;
            self.last_executed = seq;
            self.own_checkpoints.insert(
                seq,
                OwnCheckpoint {
                    digest,
                    snapshot: record.snapshot,
                },
            );
            return;
        }
    }

    /// The accepted pre-prepares; returns the view of each slot's latest one.
    fn recover_pre_prepares(&mut self, ctx: &mut Ctx<'_, '_, S>) -> BTreeMap<Seq, View> {
        // Per slot: the valid copy of the highest view, and whether a copy is corrupt.
        type Copies<C> = BTreeMap<Seq, (Option<PrePrepareRecord<C>>, bool)>;
        let mut found: Copies<S::Command> = BTreeMap::new();
        for key in ctx.keys_with_prefix(durable::PRE_PREPARE_PREFIX) {
            let Some(seq) = durable::parse_seq(durable::PRE_PREPARE_PREFIX, &key) else {
                continue;
            };
            if !self.in_window(seq) {
                continue;
            }
            let entry = found.entry(seq).or_insert((None, false));
            match load::<S, PrePrepareRecord<S::Command>>(ctx, &key) {
                Found::Valid(record) if record.statement.value.seq == seq => {
                    let view = record.statement.value.view;
                    if entry
                        .0
                        .as_ref()
                        .is_none_or(|held| view > held.statement.value.view)
                    {
                        entry.0 = Some(record);
                    }
                }
                Found::Valid(_) | Found::Corrupt => entry.1 = true,
                Found::Absent | Found::Torn => {}
            }
        }
        let now_ns = ctx.now_ns();
        let mut views = BTreeMap::new();
        for (seq, (record, corrupt)) in found {
            let Some(record) = record else {
                if corrupt {
                    self.damaged.insert(seq);
                }
                continue;
            };
            views.insert(seq, record.statement.value.view);
            if record.statement.value.view == self.view {
                let slot = self.slot_in_view(seq);
                slot.pre_prepare = Some(record.statement);
                slot.request = record.request;
                slot.accepted_ns = now_ns;
            }
        }
        views
    }

    /// The P set; `pre_prepared` holds each slot's latest accepted pre-prepare view.
    fn recover_prepared(&mut self, ctx: &mut Ctx<'_, '_, S>, pre_prepared: &BTreeMap<Seq, View>) {
        // Per slot: the newest valid certificate with its copy, and whether a copy is corrupt.
        type Copies<C> = BTreeMap<Seq, (Option<(PreparedCert<C>, u8)>, bool)>;
        let mut found: Copies<S::Command> = BTreeMap::new();
        for key in ctx.keys_with_prefix(durable::PREPARED_PREFIX) {
            let Some(seq) = durable::parse_seq(durable::PREPARED_PREFIX, &key) else {
                continue;
            };
            if !self.in_window(seq) {
                continue;
            }
            let copy = u8::from(key.ends_with("/1"));
            let entry = found.entry(seq).or_insert((None, false));
            match load::<S, PreparedCert<S::Command>>(ctx, &key) {
                Found::Valid(cert) if cert.pre_prepare.value.seq == seq => {
                    let newer = entry.0.as_ref().is_none_or(|(held, _)| {
                        cert.pre_prepare.value.view > held.pre_prepare.value.view
                    });
                    if newer {
                        entry.0 = Some((cert, copy));
                    }
                }
                Found::Valid(_) | Found::Corrupt => entry.1 = true,
                Found::Absent | Found::Torn => {}
            }
        }
        for (seq, (cert, corrupt)) in found {
            // A corrupt copy may have held a newer certificate, unless the valid one is of
            // the view of the latest accepted pre-prepare (none can be newer than that).
            let newest_possible = cert.as_ref().is_some_and(|(cert, _)| {
                pre_prepared.get(&seq) == Some(&cert.pre_prepare.value.view)
            });
            if corrupt && !newest_possible {
                self.damaged.insert(seq);
            }
            if let Some(cert) = cert {
                self.prepared.insert(seq, cert);
            }
        }
    }

    /// A snapshot vouched for by a stable checkpoint proof.
    pub(crate) fn on_state_transfer(&mut self, ctx: &mut Ctx<'_, '_, S>, transfer: StateTransfer) {
        let Some(first) = transfer.proof.first().map(|vote| vote.value) else {
            return ctx.ignore("state: empty proof");
        };
        if first.seq <= self.last_executed || first.seq < self.stable.seq {
            return ctx.ignore("state: not ahead of this replica");
        }
        let quorums = self.quorums;
        let proof_check = check_checkpoint_proof(
            &mut verifier(ctx),
            first.seq,
            first.digest,
            &transfer.proof,
            quorums,
        );
        if let Err(reason) = proof_check {
            return ctx.ignore(reason);
        }
        if Digest::of_bytes(&transfer.snapshot) != first.digest {
            return ctx.ignore("state: snapshot does not match the checkpoint digest");
        }
        let Ok(state) = Sessions::<S>::restore(&transfer.snapshot) else {
            return ctx.ignore("state: snapshot does not decode");
        };
        let record = CheckpointRecord {
            seq: first.seq,
            snapshot: transfer.snapshot.clone(),
        };
        if !Self::persist(ctx, &durable::checkpoint_key(first.seq), &record) {
            return;
        }
        self.state = state;
        self.last_executed = first.seq;
        self.own_checkpoints.insert(
            first.seq,
            OwnCheckpoint {
                digest: first.digest,
                snapshot: transfer.snapshot,
            },
        );
        self.make_stable(ctx, first.seq, first.digest, transfer.proof);
        self.log = self.log.split_off(&Seq(first.seq.0 + 1));
        ctx.sync();
        self.prune_pending();
        self.execute_ready(ctx);
        self.arm_request_timer(ctx);
    }
}
