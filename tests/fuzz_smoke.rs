//! The fuzz targets of `fuzz/` on stable Rust: each target body runs over seeded random byte
//! strings (and a few hand-made ones) on every `cargo test`. A panic is a finding, as under
//! libFuzzer; `cd fuzz && cargo +nightly fuzz run <target>` searches far deeper.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use dst_sim::decision::SeededSource;

/// Random inputs per cheap target; the run-based target gets fewer.
const INPUTS: u64 = 3_000;
const RUNS: u64 = 48;
const LEN_MAX: u64 = 256;

/// Seeded byte strings: mostly short, some long, some with structure (a valid prefix).
fn inputs(salt: u64, count: u64, prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut source = SeededSource::new(salt);
    (0..count)
        .map(|index| {
            let len = source.next_u64() % (LEN_MAX + 1);
            let mut bytes: Vec<u8> = if index % 3 == 0 {
                prefix.to_vec()
            } else {
                Vec::new()
            };
            bytes.extend((0..len).map(|_| source.next_u64() as u8));
            bytes
        })
        .collect()
}

#[test]
fn the_trace_decoder_survives_random_bytes() {
    let header = b"DSTTRACE 1\n{\"protocol\":\"raft\",\"profile\":\"none\",\"nodes\":3,\"clients\":1,\"ops\":1,\"seed\":1,\"config\":\"\",\"trace_hash\":\"\"}\n";
    for input in inputs(1, INPUTS, header) {
        targets::trace_decoder(&input);
    }
    // Well-formed bodies (tag, one-byte value) with one random byte flipped reach deeper.
    let mut source = SeededSource::new(6);
    let mut decoded = 0;
    for _ in 0..INPUTS {
        let mut input = header.to_vec();
        for _ in 0..source.next_u64() % 64 {
            input.push((source.next_u64() % 13) as u8);
            input.push((source.next_u64() & 0x7f) as u8);
        }
        let at = (source.next_u64() % input.len() as u64) as usize;
        input[at] ^= 1 << (source.next_u64() % 8);
        targets::trace_decoder(&input);
        decoded += u32::from(dst_sim::Trace::from_bytes(&input).is_ok());
    }
    assert!(
        decoded > 100,
        "the structured inputs must reach the decisions ({decoded})"
    );
}

#[test]
fn the_history_readers_survive_random_bytes() {
    let line = b"{:process 0, :type :invoke, :f :write, :value 3}\n{:process 0, :type :ok, :f :write, :value 3}\n";
    for input in inputs(2, INPUTS, line) {
        targets::history_readers(&input);
    }
    // Text made of the format's own tokens reaches deeper than random bytes.
    let tokens: [&[u8]; 10] = [
        b"{",
        b"}",
        b":process ",
        b"0",
        b":type :invoke",
        b":type :ok",
        b":f :read",
        b":value nil",
        b", ",
        b"\n",
    ];
    let mut source = SeededSource::new(3);
    for _ in 0..INPUTS {
        let text: Vec<u8> = (0..source.next_u64() % 40)
            .flat_map(|_| tokens[(source.next_u64() % tokens.len() as u64) as usize].to_vec())
            .collect();
        targets::history_readers(&text);
    }
}

#[test]
fn the_message_decoders_and_handlers_survive_random_bytes() {
    for input in inputs(4, INPUTS, &[]) {
        targets::raft_messages(&input);
        targets::paxos_messages(&input);
    }
}

#[test]
fn runs_decided_by_random_bytes_stay_safe() {
    for (index, mut input) in inputs(5, RUNS, &[]).into_iter().enumerate() {
        // Cover every profile and both protocols.
        input.insert(0, index as u8 ^ if index % 2 == 0 { 0 } else { 0x80 });
        targets::decisions(&input);
    }
}
