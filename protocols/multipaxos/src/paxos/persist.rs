//! Loading from disk, learning and applying chosen values, and the persist-then-send step.

use dst_protocols::{command_digest, Observation, Reply};
use dst_sim::{StateMachine, StorageError};

use super::{Ctx, MultiPaxos, Out, PaxosTimer, Status};
use crate::durable::{
    accept_key, decode, encode, parse_accept_key, AcceptRecord, Meta, ACCEPT_PREFIX, ALL_PREFIX,
    META_KEYS,
};
use crate::message::{PaxosMsg, Slot, Value};

/// A write that did not land or read back differently.
enum PersistError {
    Storage,
    Mismatch,
}

impl From<StorageError> for PersistError {
    fn from(_: StorageError) -> Self {
        PersistError::Storage
    }
}

impl<S: StateMachine> MultiPaxos<S> {
    /// Reads everything back. `Err` only for I/O errors (retry); damage is handled here.
    pub(crate) fn load(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(), StorageError> {
        self.reset();
        self.status = Status::Running;
        if ctx.keys_with_prefix(ALL_PREFIX).is_empty() {
            return Ok(());
        }
        let (meta, any_missing) = self.load_meta(ctx)?;
        let Some(meta) = meta else {
            if any_missing {
                // Both copies are written in one batch before any reply: a missing copy
                // means no promise or accept was ever acknowledged. Start afresh.
                return self.discard_unacknowledged(ctx);
            }
            self.status = Status::Halted("no readable promise record".to_string());
            return Ok(());
        };
        self.meta = meta;
        self.max_round_seen = self.meta.promised.round;
        self.load_accepts(ctx)?;
        if !self.damaged.is_empty() {
            tracing::warn!(node = %self.id, slots = ?self.damaged, "damaged accept records");
        }
        Ok(())
    }

    fn discard_unacknowledged(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(), StorageError> {
        for key in ctx.keys_with_prefix(ALL_PREFIX) {
            ctx.delete(&key)?;
        }
        Ok(())
    }

    /// The newest valid copy, and whether a copy was missing.
    fn load_meta(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(Option<Meta>, bool), StorageError> {
        let mut best: Option<Meta> = None;
        let mut any_missing = false;
        for key in META_KEYS {
            let Some(bytes) = read_retrying(ctx, key)? else {
                any_missing = true;
                continue;
            };
            match decode::<Meta>(key, &bytes) {
                Ok(meta) if best.as_ref().is_none_or(|b| meta.version > b.version) => {
                    best = Some(meta)
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(node = %self.id, key, "damaged promise copy"),
            }
        }
        Ok((best, any_missing))
    }

    /// Loads every readable accept record and notes the damaged ones: they may hold an
    /// acknowledged accept, so phase 1 must not count this node for those slots.
    fn load_accepts(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(), StorageError> {
        for key in ctx.keys_with_prefix(ACCEPT_PREFIX) {
            let Some(slot) = parse_accept_key(&key) else {
                continue;
            };
            let Some(bytes) = read_retrying(ctx, &key)? else {
                continue;
            };
            match decode::<AcceptRecord<S::Command>>(&key, &bytes) {
                Ok(record) if record.slot == slot => {
                    if record.chosen {
                        self.learn_chosen(ctx, slot, record.value.clone());
                    }
                    self.accepted.insert(slot, record);
                }
                _ => {
                    self.damaged.insert(slot);
                }
            }
        }
        Ok(())
    }

    /// Records that `slot` is chosen with `value` (reported once per incarnation).
    pub(crate) fn learn_chosen(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        slot: Slot,
        value: Value<S::Command>,
    ) {
        if let Some(known) = self.chosen.get(&slot) {
            if *known != value {
                ctx.observe(Observation::InvariantViolated {
                    node: self.id,
                    what: format!("slot {} chosen twice with different values", slot.0),
                });
            }
            return;
        }
        let request = value.as_ref().map(|r| (r.client, r.sequence));
        let digest = value.as_ref().map_or(0, |r| command_digest(&r.command));
        ctx.observe(Observation::Commit {
            node: self.id,
            slot: slot.0,
            request,
            command_digest: digest,
        });
        if self.damaged.remove(&slot) {
            // Store it as chosen: it replaces whatever damaged record we had.
            let record = AcceptRecord {
                slot,
                ballot: self
                    .accepted
                    .get(&slot)
                    .map_or(self.meta.promised, |r| r.ballot),
                value: value.clone(),
                chosen: true,
            };
            self.accepted.insert(slot, record);
            self.dirty.slots.insert(slot);
        }
        self.chosen.insert(slot, value);
        while self.chosen.contains_key(&self.chosen_below) {
            self.chosen_below = self.chosen_below.next();
        }
        self.proposals.remove(&slot);
    }

    /// Ends a handler: apply, persist, sync, then release the outbox.
    pub(crate) fn finish(&mut self, ctx: &mut Ctx<'_, S>) {
        self.apply_chosen(ctx);
        match self.persist(ctx) {
            Ok(()) => self.release(ctx),
            Err(error) => {
                if let PersistError::Mismatch = error {
                    self.dirty.all = true;
                }
                self.outbox.clear();
                if self.retry_timer.is_none() {
                    self.retry_timer =
                        Some(ctx.set_timer(self.config.storage_retry_ns, PaxosTimer::StorageRetry));
                }
            }
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_, S>) {
        let checksums = self.config.message_checksums;
        // Taken while it is released, then handed back empty: its allocation serves the
        // next handler instead of growing anew.
        let mut outbox = std::mem::take(&mut self.outbox);
        for out in outbox.drain(..) {
            match out {
                Out::Send(to, body) => ctx.send(to, PaxosMsg::seal(body, checksums)),
                Out::Reply(client, reply) => ctx.reply(client, reply),
            }
        }
        self.outbox = outbox;
    }

    fn apply_chosen(&mut self, ctx: &mut Ctx<'_, S>) {
        while self.applied_below < self.chosen_below {
            let slot = self.applied_below;
            let value = self.chosen.get(&slot).cloned().flatten();
            let mut request_id = None;
            if let Some(request) = value {
                let key = (request.client, request.sequence);
                request_id = Some(key);
                // The session table applies each (client, sequence) at most once.
                let output = self.state.apply(&request).into_output();
                if self.pending.remove(&key) {
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
                slot: slot.0,
                request: request_id,
                state_digest: self.state.digest(),
            });
            self.applied_below = slot.next();
        }
    }

    /// Writes what is dirty, reads each write back, and syncs if anything was written or a
    /// message must wait for earlier writes.
    fn persist(&mut self, ctx: &mut Ctx<'_, S>) -> Result<(), PersistError> {
        if self.dirty.all {
            self.dirty.meta = true;
            self.dirty.slots.extend(self.accepted.keys().copied());
        }
        let wrote = self.dirty.meta || !self.dirty.slots.is_empty();
        while let Some(&slot) = self.dirty.slots.first() {
            if let Some(record) = self.accepted.get(&slot) {
                let key = accept_key(slot);
                write_checked(ctx, &key, encode(&key, record))?;
            }
            self.dirty.slots.remove(&slot);
        }
        if self.dirty.meta {
            self.meta.version += 1;
            for key in META_KEYS {
                write_checked(ctx, key, encode(key, &self.meta))?;
            }
            self.dirty.meta = false;
        }
        self.dirty.all = false;
        if wrote {
            ctx.sync();
        }
        Ok(())
    }
}

/// Reads attempted per key while loading before giving up on this boot attempt: a load
/// reads every record, so without retries a long log would rarely load under I/O errors.
const LOAD_READ_ATTEMPTS: usize = 8;

fn read_retrying<S: StateMachine>(
    ctx: &mut Ctx<'_, S>,
    key: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut result = ctx.read(key);
    for _ in 1..LOAD_READ_ATTEMPTS {
        if !matches!(result, Err(StorageError::Io)) {
            break;
        }
        result = ctx.read(key);
    }
    result
}

fn write_checked<S: StateMachine>(
    ctx: &mut Ctx<'_, S>,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(), PersistError> {
    ctx.write(key, &bytes)?;
    if !ctx.read_with(key, |stored| stored == Some(bytes.as_slice()))? {
        return Err(PersistError::Mismatch);
    }
    Ok(())
}
