//! What protocols need to know about a service beyond [`StateMachine`]: which commands are
//! reads, and how to answer a read without going through the log (ReadIndex, leases).

use dst_sim::StateMachine;

/// A replicated service with read-only commands.
pub trait Service: StateMachine {
    /// True for commands that never change the state; protocols may serve them without
    /// appending them to the log, and durability does not require them to be committed.
    fn is_read_only(command: &Self::Command) -> bool;

    /// Answers a read-only command from the current state; `None` for other commands.
    fn query(&self, command: &Self::Command) -> Option<Self::Output>;
}
