#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dst_fuzz::targets::paxos_messages(data));
