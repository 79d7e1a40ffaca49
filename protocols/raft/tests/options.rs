//! Raft's design options are named, listed with their values, and settable by name; an
//! unknown name or a bad value is an error.

use dst_protocols::Configurable;
use dst_raft::{RaftConfig, ReadMode};

#[test]
fn every_listed_option_accepts_its_own_value() {
    let mut config = RaftConfig::default();
    for (name, value) in config.options() {
        config
            .set_option(name, &value)
            .unwrap_or_else(|error| panic!("{name}={value}: {error}"));
    }
    assert_eq!(config, RaftConfig::default());
}

#[test]
fn options_change_the_configuration() {
    let mut config = RaftConfig::default();
    config.set_option("pre_vote", "false").expect("valid");
    config.set_option("read_mode", "lease").expect("valid");
    config.set_option("batch_max", "8").expect("valid");
    assert!(!config.pre_vote);
    assert_eq!(config.read_mode, ReadMode::Lease);
    assert_eq!(config.max_entries_per_message, 8);
}

#[test]
fn unknown_options_and_bad_values_are_errors() {
    let mut config = RaftConfig::default();
    let error = config.set_option("prevote", "true").unwrap_err();
    assert!(
        error.contains("no option 'prevote'") && error.contains("pre_vote"),
        "{error}"
    );
    assert!(config.set_option("pre_vote", "yes please").is_err());
    assert!(config.set_option("read_mode", "quorum").is_err());
    assert!(
        config.set_option("election_timeout_max_ms", "1").is_err(),
        "max below min"
    );
}
