//! The history readers: formats, traps (mixed separators, timed-out reads, empty files), line
//! numbers in errors, and no panic on truncated or garbled input.

use dst_checkers::files::{check_text, ModelName};
use dst_checkers::history::Outcome;
use dst_checkers::linearizability::{CheckConfig, KvOp, RegisterInput, Verdict};
use dst_checkers::readers::{edn, etcd};

const ETCD: &str = "INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 1   :invoke :read   nil
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 1   :ok     :read   1
INFO  jepsen.util - 2\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:fail\t:read\t:timed-out
INFO  jepsen.util - 2\t:info\t:cas\t:timed-out
INFO  jepsen.util - 4\t:invoke\t:cas\t[5 6]
INFO  jepsen.util - 4\t:fail\t:cas\t[5 6]
INFO  jepsen.util - 5\t:invoke\t:write\t3
";

#[test]
fn etcd_logs_read_with_tabs_or_spaces_and_their_traps() {
    let parsed = etcd::read(ETCD).expect("valid log");
    let ops = &parsed.history.operations;
    assert_eq!(ops.len(), 6);
    assert_eq!(ops[1].input, RegisterInput::Read);
    assert_eq!(ops[1].outcome, Outcome::Ok(Some(1)));
    assert_eq!(ops[2].input, RegisterInput::Cas { from: 1, to: 2 });
    assert_eq!(ops[2].outcome, Outcome::Unknown, ":info is indeterminate");
    assert_eq!(
        ops[3].outcome,
        Outcome::Unknown,
        "a timed-out read constrains nothing"
    );
    assert_eq!(ops[4].outcome, Outcome::Fail, "a failed cas did not happen");
    assert_eq!(ops[5].outcome, Outcome::Unknown, "still open at the end");
    assert_eq!(ops[5].ret, u64::MAX);
    assert!(ops[0].call < ops[0].ret && ops[0].ret < ops[1].ret);
}

#[test]
fn an_empty_file_is_a_linearizable_empty_history() {
    for model in [
        ModelName::Etcd,
        ModelName::Register,
        ModelName::CasRegister,
        ModelName::Kv,
    ] {
        let result = check_text(model, "", &CheckConfig::default(), None).expect("empty is valid");
        assert_eq!(result.report.verdict, Verdict::Linearizable);
        assert_eq!(result.operations, 0);
    }
}

#[test]
fn edn_histories_read_one_per_line_or_in_a_vector() {
    let lines = "{:process 0, :type :invoke, :f :write, :value 3}
{:process 0, :type :ok, :f :write, :value 3}
{:process :nemesis, :type :info, :f :start, :value \"partition\"}
{:process 1, :type :invoke, :f :cas, :value [3 4]}
{:process 1, :type :ok, :f :cas, :value [3 4]}
{:process 2, :type :invoke, :f :read, :value nil}
{:process 2, :type :ok, :f :read, :value 4}
";
    let vector = format!("[{}]", lines.replace('\n', " "));
    for text in [lines.to_string(), vector] {
        let parsed = edn::read_cas_register(&text).expect("valid EDN");
        assert_eq!(parsed.history.operations.len(), 3);
        assert_eq!(
            parsed.annotations.len(),
            1,
            "the nemesis event is an annotation"
        );
        let result = check_text(ModelName::CasRegister, &text, &CheckConfig::default(), None)
            .expect("valid");
        assert_eq!(result.report.verdict, Verdict::Linearizable);
    }
    let error = edn::read_register(lines).expect_err("cas does not fit the register model");
    assert_eq!(error.line, 4);
}

#[test]
fn kv_edn_reads_keys_and_values() {
    let text = "{:process 3, :type :invoke, :f :append, :key \"4\", :value \"x 3 1 y\"}
{:process 3, :type :ok, :f :append, :key \"4\", :value \"x 3 1 y\"}
{:process 0, :type :invoke, :f :get, :key \"4\", :value nil}
{:process 0, :type :ok, :f :get, :key \"4\", :value \"x 3 1 y\"}
";
    let parsed = edn::read_kv(text).expect("valid");
    let ops = &parsed.history.operations;
    assert_eq!(ops[0].input.op, KvOp::Append("x 3 1 y".into()));
    assert_eq!(ops[1].outcome, Outcome::Ok(Some("x 3 1 y".into())));
}

#[test]
fn malformed_lines_are_errors_naming_the_line() {
    let bad_etcd =
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - x\t:ok\t:read\tnil\n";
    assert_eq!(etcd::read(bad_etcd).expect_err("bad process").line, 2);
    let unmatched = "INFO  jepsen.util - 0\t:ok\t:read\tnil\n";
    assert_eq!(etcd::read(unmatched).expect_err("never invoked").line, 1);
    let bad_edn = "{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0, :type :ok, :f :read, :value \"x\"}\n";
    assert_eq!(
        edn::read_cas_register(bad_edn)
            .expect_err("string read")
            .line,
        2
    );
    let unterminated = "{:process 0, :type :invoke,\n :f :read";
    assert!(edn::read_cas_register(unterminated).is_err());
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Truncations and byte-level garbling of valid inputs: every reader either reads them or
/// returns an error; none panics, and whatever it reads can be checked.
#[test]
fn truncated_and_garbled_input_never_panics() {
    let kv = "{:process 3, :type :invoke, :f :append, :key \"4\", :value \"x 3 1 y\"}
{:process 3, :type :ok, :f :append, :key \"4\", :value \"x 3 1 y\"}
[{:process 0, :type :invoke, :f :cas, :key \"4\", :value [\"a\" \"b\"]} {:process 0 :type :fail :f :cas :key \"4\"}]
";
    let register = "{:process 0, :type :invoke, :f :cas, :value [1 2]}\n{:process 0, :type :info, :f :cas, :value [1 2]}\n";
    let junk: &[u8] = b"{}[]()\":;,\\ \t\nnil:okx0-9#\xff";
    let mut rng = 1u64;
    for sample in [ETCD, kv, register] {
        let bytes = sample.as_bytes();
        let mut inputs: Vec<Vec<u8>> = (0..bytes.len()).map(|cut| bytes[..cut].to_vec()).collect();
        for _ in 0..300 {
            let mut garbled = bytes.to_vec();
            for _ in 0..1 + splitmix64(&mut rng) % 4 {
                let at = (splitmix64(&mut rng) % garbled.len() as u64) as usize;
                let byte = junk[(splitmix64(&mut rng) % junk.len() as u64) as usize];
                match splitmix64(&mut rng) % 3 {
                    0 => garbled[at] = byte,
                    1 => garbled.insert(at, byte),
                    _ => {
                        garbled.remove(at);
                    }
                }
            }
            inputs.push(garbled);
        }
        for input in inputs {
            let text = String::from_utf8_lossy(&input);
            for model in [
                ModelName::Etcd,
                ModelName::Register,
                ModelName::CasRegister,
                ModelName::Kv,
            ] {
                let _ = check_text(model, &text, &CheckConfig::default(), None);
            }
        }
    }
    // Deep nesting is an error, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(edn::read_kv(&deep).is_err());
}
