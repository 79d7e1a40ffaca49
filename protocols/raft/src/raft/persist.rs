//! Applying committed entries, snapshots, and the persist-then-send step that ends every
//! handler.

use dst_protocols::{Observation, Reply};
use dst_sim::{NodeId, StateMachine, StorageError};

use super::{Ctx, Out, PersistError, Raft, RaftTimer, Role};
use crate::durable::{
    encode_into, parse_log_key, LogKey, LogRecordRef, SnapshotRecord, LOG_PREFIX, META_KEYS,
    SNAPSHOT_KEYS,
};
use crate::message::{Body, LogIndex, Persisted, RaftMsg};

impl<S: StateMachine> Raft<S> {
    /// Ends every handler: apply, maybe snapshot, persist, sync, then release the outbox.
    pub(super) fn finish(&mut self, ctx: &mut Ctx<'_, S>) {
        self.apply_committed(ctx);
        self.maybe_snapshot();
        // Taken while it is released, then handed back empty: its allocation serves the
        // next handler.
        let mut outbox = std::mem::take(&mut self.outbox);
        self.persist_and_release(ctx, &mut outbox);
        outbox.clear();
        self.outbox = outbox;
    }

    /// Persists what is dirty; on success releases the outbox (else withholds it).
    fn persist_and_release(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        outbox: &mut Vec<Out<S::Command, S::Output>>,
    ) {
        match self.persist(ctx) {
            Ok(wrote) => {
                // A lost note would leave a leader unsure of its own log: heartbeats ask
                // for another (a sync with nothing new to write is cheap).
                let note = (wrote && self.wants_persisted_note()) || self.note_wanted;
                self.note_wanted = false;
                if wrote {
                    ctx.sync();
                }
                let checksums = self.config.message_checksums;
                release(ctx, outbox.drain(..), checksums);
                if note {
                    if !wrote {
                        // Nothing new: the outbox did not wait, only the note does.
                        ctx.sync();
                    }
                    // Leaves only once the sync completed: when it arrives, the writes are
                    // durable.
                    let note = Persisted {
                        last_index: self.last_index(),
                        last_term: self.last_term(),
                        snapshot_index: self.written_snapshot.0,
                        snapshot_slot: self.written_snapshot.1 as u8,
                        meta_version: self.meta.version,
                    };
                    ctx.send(self.id, RaftMsg::seal(Body::Persisted(note), checksums));
                }
            }
            Err(error) => {
                let reason = match error {
                    PersistError::Storage(StorageError::Full) => "disk full: withholding output",
                    PersistError::Storage(StorageError::Io) => "I/O error: withholding output",
                    PersistError::Mismatch => "read-back mismatch: withholding output",
                };
                ctx.ignore(reason);
                if self.retry_timer.is_none() {
                    let delay_ns = self.config.storage_retry_ns;
                    self.retry_timer = Some(ctx.set_timer(delay_ns, RaftTimer::StorageRetry));
                }
            }
        }
    }

    /// Who needs to learn what is durable: a leader (it counts itself towards commits only up
    /// to its durable log), a recovering node (it may vote freely once its rebuilt log is
    /// durable), and a node with a new snapshot (it deletes the log below it once durable).
    fn wants_persisted_note(&self) -> bool {
        self.role == Role::Leader
            || self.recovery_exit_at.is_some()
            || self.recovery_unconfirmed.is_some()
            || self.written_snapshot.0 > self.durable_snapshot.0
    }

    /// Writes whatever is dirty. Returns whether anything was written.
    fn persist(&mut self, ctx: &mut Ctx<'_, S>) -> Result<bool, PersistError> {
        // One encoding buffer serves every write of every handler.
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        let result = self.persist_dirty(ctx, &mut buffer);
        self.encode_buffer = buffer;
        result
    }

    fn persist_dirty(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        buffer: &mut Vec<u8>,
    ) -> Result<bool, PersistError> {
        let mut wrote = false;
        let stored_term_max = self.last_term().max(self.snapshot.last_term);
        if stored_term_max > self.meta.entry_term_max {
            // Written below with the entries, before the sync that precedes any ack.
            self.meta.entry_term_max = stored_term_max;
            self.dirty.meta = true;
        }
        if self.dirty.snapshot {
            let slot = 1 - self.durable_snapshot.1;
            let key = SNAPSHOT_KEYS[slot];
            encode_into(key, &self.snapshot, buffer);
            write_verified(ctx, self.id, key, buffer)?;
            self.written_snapshot = (self.snapshot.last_index, slot);
            self.dirty.snapshot = false;
            wrote = true;
        }
        if let Some(from) = self.dirty.log_from {
            self.persist_log(ctx, from, buffer)?;
            self.dirty.log_from = None;
            wrote = true;
        }
        if self.dirty.meta {
            self.meta.version += 1;
            for key in META_KEYS {
                encode_into(key, &self.meta, buffer);
                write_verified(ctx, self.id, key, buffer)?;
            }
            self.dirty.meta = false;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Rewrites entries `from..=last` and deletes keys past the end.
    fn persist_log(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: LogIndex,
        buffer: &mut Vec<u8>,
    ) -> Result<(), PersistError> {
        let first = from.max(self.snapshot.last_index.next());
        let last = self.last_index();
        let mut prev_term = self
            .term_at(first.prev())
            .unwrap_or(self.snapshot.last_term);
        let offset = (first.0 - self.snapshot.last_index.0 - 1) as usize;
        let entries = self.log.get(offset..).unwrap_or_default();
        for (index, entry) in (first.0..).zip(entries) {
            let record = LogRecordRef { entry, prev_term };
            prev_term = entry.term;
            let key = LogKey::new(LogIndex(index));
            let key = key.as_str();
            encode_into(key, &record, buffer);
            write_verified(ctx, self.id, key, buffer)?;
        }
        if self.disk_last_index > last {
            for key in ctx.keys_with_prefix(LOG_PREFIX) {
                if parse_log_key(&key).is_none_or(|index| index > last) {
                    ctx.delete(&key)?;
                }
            }
        }
        self.disk_last_index = last;
        Ok(())
    }

    /// The note this node sent itself after a sync arrived: what it names is durable.
    pub(super) fn on_persisted(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, note: Persisted) {
        if from != self.id {
            ctx.ignore("persisted note from another node");
            return;
        }
        if note.last_index <= self.last_index()
            && self.term_at(note.last_index) == Some(note.last_term)
            && note.last_index > self.persisted_index
        {
            self.persisted_index = note.last_index;
        }
        let slot = note.snapshot_slot as usize;
        if note.snapshot_index > self.durable_snapshot.0 && slot < SNAPSHOT_KEYS.len() {
            self.durable_snapshot = (note.snapshot_index, slot);
            self.compact_disk(ctx, note.snapshot_index);
        }
        if self
            .recovery_unconfirmed
            .is_some_and(|version| note.meta_version >= version)
        {
            self.recovery_unconfirmed = None;
        }
        if let Some(exit_at) = self.recovery_exit_at {
            if self.persisted_index >= exit_at || self.snapshot.last_index >= exit_at {
                tracing::debug!(node = %self.id, "log rebuilt: recovery over");
                self.meta.recovery = None;
                self.recovery_exit_at = None;
                self.dirty.meta = true;
            }
        }
        if self.role == Role::Leader {
            self.advance_commit(ctx);
        }
    }

    /// Deletes log keys covered by a durable snapshot. Only now: had we deleted them when
    /// the snapshot was written, a crash could keep the deletes and lose the snapshot.
    fn compact_disk(&mut self, ctx: &mut Ctx<'_, S>, upto: LogIndex) {
        // Zero-padded indices sort like numbers: the range holds exactly the keys up to
        // `upto`, so the keys above it are never listed.
        let last = LogKey::new(upto);
        for key in ctx.keys_in_range(LOG_PREFIX, last.as_str()) {
            let Some(index) = parse_log_key(&key) else {
                continue;
            };
            if index > upto {
                break;
            }
            // A failed delete leaves a harmless key below the snapshot; the next compaction
            // retries it.
            if ctx.delete(&key).is_err() {
                break;
            }
        }
    }

    /// "If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied] to
    /// state machine."
    fn apply_committed(&mut self, ctx: &mut Ctx<'_, S>) {
        while self.last_applied < self.commit_index {
            let index = self.last_applied.next();
            // A shared handle: the entry stays readable while the service changes.
            let Some(entry) = self.shared_entry(index).cloned() else {
                let what = format!("committed index {} missing from the log", index.0);
                ctx.observe(Observation::InvariantViolated {
                    node: self.id,
                    what,
                });
                return;
            };
            self.last_applied = index;
            if entry.config.is_some() {
                self.configs_applied += 1;
            }
            let request = entry.request.as_ref().map(|r| (r.client, r.sequence));
            if let Some(request) = &entry.request {
                // The session table applies each (client, sequence) at most once.
                let output = self.state.apply(request).into_output();
                let key = (request.client, request.sequence);
                if self.pending_writes.remove(&key) {
                    if let Some(output) = output {
                        let reply = Reply::Done {
                            sequence: request.sequence,
                            output,
                        };
                        self.outbox.push(Out::Reply(request.client, reply));
                    }
                }
            }
            ctx.observe(Observation::Apply {
                node: self.id,
                slot: index.0,
                request,
                state_digest: self.state.digest(),
            });
        }
        self.serve_reads(ctx);
    }

    /// Compacts the log once enough applied entries follow the snapshot.
    fn maybe_snapshot(&mut self) {
        let since = self.last_applied.0 - self.snapshot.last_index.0;
        if since < self.config.snapshot_threshold_entries.max(1) {
            return;
        }
        let index = self.last_applied;
        let Some(term) = self.term_at(index) else {
            return;
        };
        let bytes = self.state.snapshot();
        let config = self.config_at(index).clone();
        let drop = (index.0 - self.snapshot.last_index.0) as usize;
        self.log.drain(..drop);
        self.snapshot = SnapshotRecord {
            last_index: index,
            last_term: term,
            config,
            data: bytes,
        };
        if self.members_index <= index {
            // The configuration now lives in the snapshot.
            self.members_index = index;
        }
        self.dirty.snapshot = true;
        if let Some(from) = self.dirty.log_from {
            self.dirty.log_from = Some(from.max(index.next()));
        }
    }
}

/// Sends the outbox in order, each message sealed (see [`RaftMsg`]).
fn release<S: StateMachine>(
    ctx: &mut Ctx<'_, S>,
    outbox: impl Iterator<Item = Out<S::Command, S::Output>>,
    checksums: bool,
) {
    for out in outbox {
        match out {
            Out::Send(to, body) => ctx.send(to, RaftMsg::seal(body, checksums)),
            Out::Broadcast(body) => ctx.broadcast(RaftMsg::seal(body, checksums)),
            Out::Reply(client, reply) => ctx.reply(client, reply),
        }
    }
}

/// Writes and reads back. A mismatch means the bytes went elsewhere (a misdirected write)
/// or a bit flipped: the write is retried (the dirty flags stay set). The key a misdirected
/// write clobbered is unknown; if it matters, the next load finds it corrupt and the node
/// recovers (see the crate docs).
fn write_verified<S: StateMachine>(
    ctx: &mut Ctx<'_, S>,
    node: NodeId,
    key: &str,
    bytes: &[u8],
) -> Result<(), PersistError> {
    ctx.write(key, bytes)?;
    if ctx.read_with(key, |stored| stored == Some(bytes))? {
        return Ok(());
    }
    tracing::debug!(%node, key, "read-back mismatch: retrying the write");
    Err(PersistError::Mismatch)
}
