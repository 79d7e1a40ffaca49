//! Virtual time. All times and durations are `u64` nanoseconds; names carry the unit last
//! (`timeout_ns`). The engine keeps true time; nodes only see their own drifting clock.

/// One microsecond in nanoseconds.
pub const US: u64 = 1_000;
/// One millisecond in nanoseconds.
pub const MS: u64 = 1_000_000;
/// One second in nanoseconds.
pub const SEC: u64 = 1_000_000_000;

/// Formats nanoseconds as milliseconds with microsecond precision, for logs.
pub fn fmt_ms(time_ns: u64) -> String {
    format!("{}.{:03}ms", time_ns / MS, (time_ns % MS) / US)
}
