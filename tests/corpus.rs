//! Replays every entry of the failing-seed corpus in `seeds/`. Open bugs must still fail the
//! way they were recorded; fixed ones must pass. A malformed entry is named and the others
//! still replay.

use std::path::Path;

#[test]
fn every_corpus_entry_replays_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let entries = dst::corpus::load_all(&dir);
    assert!(
        !entries.is_empty(),
        "the corpus in {} is empty",
        dir.display()
    );
    let mut problems = Vec::new();
    for (path, loaded) in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let result = loaded.and_then(|(entry, trace)| dst::corpus::check(&entry, trace));
        match result {
            Ok(description) => println!("{name}: {description}"),
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    assert!(
        problems.is_empty(),
        "corpus problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_corrupt_entry_is_named_and_does_not_stop_the_others() {
    let dir = std::env::temp_dir().join(format!("dst-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-broken.json"), "{ not json").unwrap();
    std::fs::write(dir.join("b-missing-trace.json"), r#"{"protocol":"raft","profile":"none","nodes":3,"clients":1,"ops":1,"seed":1,"plan":null,"quiet_at_ms":1,"end_ms":2,"signature":"x","expected":"ok","note":"","dst_version":"0","trace":"nowhere.trace"}"#).unwrap();
    let loaded = dst::corpus::load_all(&dir);
    assert_eq!(loaded.len(), 2);
    let errors: Vec<String> = loaded.into_iter().filter_map(|(_, r)| r.err()).collect();
    assert!(
        errors[0].contains("a-broken.json") && errors[0].contains("malformed"),
        "{errors:?}"
    );
    assert!(errors[1].contains("nowhere.trace"), "{errors:?}");
    std::fs::remove_dir_all(&dir).ok();
}
