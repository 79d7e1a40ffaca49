//! Block sync (fetching missing ancestors from peers) and crash recovery.

use dst_sim::{Digest, NodeId, StateMachine};

use crate::durable::{self, SafetyRecord};
use crate::replica::{Ctx, HotStuff, FETCHING_MAX};
use crate::types::{Block, Message, Round};

/// Tries of a storage read that fails with a transient I/O error.
const READ_TRIES_MAX: usize = 3;
/// Tries of writing a record and reading it back before it is given up.
pub(crate) const WRITE_TRIES_MAX: usize = 3;

fn read_retrying<S: StateMachine>(ctx: &mut Ctx<'_, S>, key: &str) -> Option<Vec<u8>> {
    for _ in 0..READ_TRIES_MAX {
        match ctx.read(key) {
            Ok(value) => return value,
            Err(_) => continue,
        }
    }
    None
}

/// Writes `bytes` under `key` until a read returns them. A write can fail (I/O error) or
/// land under another key (misdirected), which leaves this key absent or stale; only the
/// read back tells.
pub(crate) fn write_verified<S: StateMachine>(
    ctx: &mut Ctx<'_, S>,
    key: &str,
    bytes: &[u8],
) -> bool {
    (0..WRITE_TRIES_MAX).any(|_| {
        ctx.write(key, bytes).is_ok()
            && ctx
                .read_with(key, |stored| stored == Some(bytes))
                .unwrap_or(false)
    })
}

impl<S: StateMachine> HotStuff<S> {
    /// Asks for a missing block (with its ancestors): from `to`, or from everyone.
    pub(crate) fn fetch(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        block: Digest,
        height: u64,
        to: Option<NodeId>,
    ) {
        if self.fetching.contains_key(&block) || self.fetching.len() >= FETCHING_MAX {
            return;
        }
        self.fetching.insert(block, height);
        let msg = Message::Fetch { block, height };
        match to {
            Some(peer) if peer != self.id => ctx.send(peer, msg),
            _ => ctx.broadcast(msg),
        }
    }

    /// Asks everyone again for every block still missing.
    pub(crate) fn refetch(&mut self, ctx: &mut Ctx<'_, S>) {
        let wanted: Vec<(Digest, u64)> = self.fetching.iter().map(|(d, h)| (*d, *h)).collect();
        for (block, height) in wanted {
            ctx.broadcast(Message::Fetch { block, height });
        }
    }

    /// Upon a fetch: answer with the block and its ancestors, newest first, from memory or
    /// (committed ones) from disk.
    pub(crate) fn on_fetch(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        block: Digest,
        height: u64,
    ) {
        let mut blocks = Vec::new();
        let (mut digest, mut height) = (block, height);
        while blocks.len() < self.config.fetch_blocks_max && digest != self.genesis {
            let Some(found) = self.find_block(ctx, digest, height) else {
                break;
            };
            digest = found.parent;
            height = found.height.saturating_sub(1);
            blocks.push(found);
        }
        if blocks.is_empty() {
            ctx.ignore("fetch for a block this replica does not hold");
            return;
        }
        ctx.send(from, Message::Blocks { blocks });
    }

    fn find_block(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        digest: Digest,
        height: u64,
    ) -> Option<Block<S::Command>> {
        if let Some(block) = self.blocks.get(&digest) {
            return Some(block.clone());
        }
        if height == 0 || height > self.committed_height {
            return None;
        }
        self.load_block(ctx, height)
            .filter(|block| block.digest() == digest)
    }

    /// Stores a committed block under both its keys (see [`durable`]).
    pub(crate) fn store_block(&mut self, ctx: &mut Ctx<'_, S>, block: &Block<S::Command>) {
        for key in durable::block_keys(block.height) {
            if !write_verified(ctx, &key, &durable::encode(&key, block)) {
                // The other copy may hold; a replica missing both fetches it from peers.
                tracing::debug!(node = %self.id, key, "block write failed");
            }
        }
    }

    /// The committed block at `height` from disk: the first copy that decodes. A damaged
    /// copy is rewritten from the good one, so faults do not pile up on one height.
    pub(crate) fn load_block(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        height: u64,
    ) -> Option<Block<S::Command>> {
        let mut damaged = Vec::new();
        for key in durable::block_keys(height) {
            let block = read_retrying(ctx, &key)
                .and_then(|bytes| durable::decode::<Block<S::Command>>(&key, &bytes))
                .filter(|block| block.height == height);
            let Some(block) = block else {
                damaged.push(key);
                continue;
            };
            for key in damaged {
                // Best effort: a failed repair leaves the height as it was.
                let _ = write_verified(ctx, &key, &durable::encode(&key, &block));
            }
            return Some(block);
        }
        None
    }

    /// Upon blocks: keep those asked for (their digest proves them), ask for their missing
    /// parents, and process what became complete.
    pub(crate) fn on_blocks(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        blocks: Vec<Block<S::Command>>,
    ) {
        if blocks.len() > self.config.fetch_blocks_max {
            ctx.ignore("blocks answer over the fetch bound");
            return;
        }
        let mut useful = false;
        let mut last_parent = None;
        for block in blocks {
            let digest = block.digest();
            if self.fetching.remove(&digest).is_none() {
                // Held already (answers overlap), or never asked for: nothing to learn.
                continue;
            }
            if block.round <= self.committed_round || self.blocks.len() > self.config.blocks_max {
                continue;
            }
            let parent = (block.parent, block.height.saturating_sub(1));
            self.blocks.insert(digest, block);
            useful = true;
            if parent.0 != self.committed && !self.blocks.contains_key(&parent.0) {
                // Wanted now; the next block of this answer is normally that parent.
                self.fetching.insert(parent.0, parent.1);
                last_parent = Some(parent);
            }
        }
        if let Some((parent, height)) = last_parent {
            if self.fetching.contains_key(&parent) && !self.blocks.contains_key(&parent) {
                ctx.send(
                    from,
                    Message::Fetch {
                        block: parent,
                        height,
                    },
                );
            }
        }
        if useful {
            self.process_pending(ctx);
        } else {
            ctx.ignore("blocks answer with nothing asked for");
        }
    }

    // ---- Uncommitted blocks on disk ---------------------------------------------------

    /// Writes `digest`'s block and its ancestors down to the committed anchor that have no
    /// chain record yet (see [`durable`]). False if one could not be written: the vote that
    /// needs them must not leave.
    pub(crate) fn store_chain(&mut self, ctx: &mut Ctx<'_, S>, digest: Digest) -> bool {
        let mut digest = digest;
        for _ in 0..=self.blocks.len() {
            if digest == self.committed || self.stored.contains(&digest) {
                return true;
            }
            let Some(block) = self.blocks.get(&digest) else {
                return false; // votes need the whole chain, so this does not happen
            };
            let key = durable::chain_key(block.round, &digest);
            let bytes = durable::encode(&key, block);
            let parent = block.parent;
            if !write_verified(ctx, &key, &bytes) {
                return false;
            }
            self.stored.insert(digest);
            digest = parent;
        }
        false
    }

    /// Deletes chain records at or below the committed round (committed blocks have their
    /// own records; the others conflict with the committed chain).
    pub(crate) fn prune_chain_records(&mut self, ctx: &mut Ctx<'_, S>) {
        self.stored
            .retain(|digest| self.blocks.contains_key(digest));
        for key in ctx.keys_with_prefix(durable::CHAIN_PREFIX) {
            let stale =
                durable::parse_chain_round(&key).is_none_or(|round| round <= self.committed_round);
            if stale {
                // A failed delete leaves a record that the next commit or restart skips.
                let _ = ctx.delete(&key);
            }
        }
    }

    /// After a restart: reloads the uncommitted blocks this replica stored before voting.
    fn load_chain(&mut self, ctx: &mut Ctx<'_, S>) {
        for key in ctx.keys_with_prefix(durable::CHAIN_PREFIX) {
            if self.blocks.len() > self.config.blocks_max {
                break;
            }
            let Some(block) = read_retrying(ctx, &key)
                .and_then(|bytes| durable::decode::<Block<S::Command>>(&key, &bytes))
            else {
                continue; // torn or damaged: fetched from the other voters if needed
            };
            if block.round <= self.committed_round {
                continue;
            }
            let digest = block.digest();
            self.blocks.insert(digest, block);
            self.stored.insert(digest);
        }
    }

    // ---- Recovery ---------------------------------------------------------------------

    /// After a crash: restore the safety data (with floors from unreadable records), replay
    /// the committed chain from disk, and rejoin at the round after the high QC.
    pub(crate) fn recover(&mut self, ctx: &mut Ctx<'_, S>) {
        self.recover_safety(ctx);
        self.replay_committed(ctx);
        self.load_chain(ctx);
        self.remember_qc(self.locked_qc.clone());
        self.remember_qc(self.high_qc.clone());
        // The high QC counts again once its chain is here (fetched if need be).
        let high_qc = std::mem::replace(&mut self.high_qc, self.locked_qc.clone());
        let round = high_qc.round.next().max(self.last_voted_round);
        self.enter_round(ctx, round.max(Round(1)), false);
        self.process_qc(ctx, high_qc);
    }

    fn recover_safety(&mut self, ctx: &mut Ctx<'_, S>) {
        let keys = ctx.keys_with_prefix(durable::SAFETY_PREFIX);
        let mut best: Option<SafetyRecord> = None;
        for key in keys.iter().rev() {
            let Some((version, voted, locked)) = durable::parse_safety_key(key) else {
                continue;
            };
            self.safety_version = self.safety_version.max(version);
            // Floors: what the newest (maybe unreadable) records promised.
            self.last_voted_round = self.last_voted_round.max(voted);
            self.lock_floor = self.lock_floor.max(locked);
            if best.is_some() {
                continue;
            }
            let record = read_retrying(ctx, key)
                .and_then(|bytes| durable::decode::<SafetyRecord>(key, &bytes))
                .filter(|record| {
                    record.version == version
                        && record.last_voted_round == voted
                        && record.locked_qc.round == locked
                });
            best = record;
        }
        if let Some(record) = best {
            self.last_voted_round = self.last_voted_round.max(record.last_voted_round);
            self.locked_qc = record.locked_qc;
            self.high_qc = record.high_qc;
        }
        if self.lock_floor <= self.locked_qc.round {
            self.lock_floor = Round(0);
        }
    }

    /// Re-executes the contiguous committed chain found on disk (no replies: the clients
    /// had theirs).
    fn replay_committed(&mut self, ctx: &mut Ctx<'_, S>) {
        self.replaying = true;
        let mut height = 1u64;
        loop {
            let Some(block) = self.load_block(ctx, height) else {
                break;
            };
            if block.parent != self.committed || block.round <= self.committed_round {
                break;
            }
            let digest = block.digest();
            self.execute(ctx, &block);
            self.blocks.remove(&self.committed);
            self.committed = digest;
            self.committed_round = block.round;
            self.committed_height = height;
            self.blocks.insert(digest, block);
            height += 1;
        }
        self.replaying = false;
    }
}
