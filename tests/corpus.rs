//! Replays every entry of the failing-seed corpus in `seeds/`. Open bugs must still fail the
//! way they were recorded; fixed ones must pass. A malformed entry is named and the others
//! still replay.

use std::path::Path;

/// The one-screen summary of an entry's replay that its snapshot holds: what it expects, who
/// found it, and what the run does (faults, network, violations).
fn reviewed_summary(entry: &dst::corpus::Entry, outcome: &dst::runner::RunOutcome) -> String {
    format!(
        "expected: {} [{}], strategy: {}, recorded by dst {}\n{}\n",
        entry.expected,
        entry.signature,
        entry.strategy,
        entry.dst_version,
        dst::shrink::event_summary(outcome)
    )
}

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
    let mut summaries = Vec::new();
    for (path, loaded) in entries {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let replayed = loaded.and_then(|(entry, trace)| {
            let outcome = dst::corpus::replay(&entry, trace)?;
            let verdict = dst::corpus::judge(&entry, &outcome);
            Ok((verdict, reviewed_summary(&entry, &outcome)))
        });
        match replayed {
            Ok((Ok(description), summary)) => {
                println!("{name}: {description}");
                summaries.push((name, summary));
            }
            Ok((Err(problem), _)) | Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    assert!(
        problems.is_empty(),
        "corpus problems:\n{}",
        problems.join("\n")
    );
    // A change in what an entry's run does shows up as a snapshot diff in review
    // (`cargo insta review`), even while the entry still passes.
    for (name, summary) in summaries {
        insta::assert_snapshot!(name, summary);
    }
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
