//! The failing-seed corpus in `seeds/`: one JSON entry per kept failure, beside its shrunk
//! decision trace. `cargo test` replays every entry (tests/corpus.rs). An entry whose bug was
//! fixed stays as a regression: its `expected` turns to "ok" and it must then pass.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runner::{self, RunOutcome, RunSpec};
use crate::shrink::Shrunk;
use dst_sim::trace::write_atomic;
use dst_sim::Trace;

/// One corpus entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub protocol: String,
    pub profile: String,
    pub nodes: u32,
    pub clients: u32,
    pub ops: u64,
    pub seed: u64,
    pub plan: Option<String>,
    pub quiet_at_ms: u64,
    pub end_ms: u64,
    /// The property the failure broke when it was found.
    pub signature: String,
    /// "violation" while the bug is open; "ok" once fixed (a regression that must pass).
    pub expected: String,
    /// What the failure is, and what fixed it.
    pub note: String,
    /// The dst version that recorded the entry.
    pub dst_version: String,
    /// The shrunk trace, relative to the entry's folder.
    pub trace: String,
    /// Whether client sessions checksummed their traffic (absent in older entries: on).
    #[serde(default = "default_true")]
    pub client_checksums: bool,
    /// The strategy that found the failure (absent in older entries: random). Replay uses
    /// it too: a strategy may set the engine up differently (pct decides ties).
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// Protocol design options (`--option name=value`), in the order they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<(String, String)>,
    /// Byzantine replicas (`--byzantine`), when not drawn by the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byzantine: Option<u32>,
    /// Every Byzantine replica's behaviour (`--behaviour`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// Model overrides (`--sign-us`, `--verify-us`, `--corrupt-ppm`, `--latency-us`): part
    /// of the run, so the trace replays only with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt_ppm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// False for a failure kept as found, before shrinking (`save_unshrunk`); absent: true.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub shrunk: bool,
    /// The replicated service (`--service`; absent: kv) and its faults (`--service-fault`).
    #[serde(
        default = "default_service",
        skip_serializing_if = "is_default_service"
    )]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_fault: Option<String>,
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_service() -> String {
    "kv".into()
}

fn is_default_service(service: &str) -> bool {
    service == "kv"
}

fn default_true() -> bool {
    true
}

fn default_strategy() -> String {
    "random".into()
}

impl Entry {
    /// The run this entry replays.
    pub fn spec(&self, trace: Trace) -> RunSpec {
        let mut spec = RunSpec::new(&self.protocol, self.seed, &self.profile);
        spec.nodes = self.nodes;
        spec.clients = self.clients;
        spec.ops = self.ops;
        spec.plan = self.plan.clone();
        spec.quiet_at_ms = self.quiet_at_ms;
        spec.end_ms = self.end_ms;
        spec.client_checksums = self.client_checksums;
        spec.strategy = self.strategy.clone();
        spec.options = self.options.clone();
        spec.byzantine = self.byzantine;
        spec.behaviour = self.behaviour.clone();
        spec.sign_us = self.sign_us;
        spec.verify_us = self.verify_us;
        spec.corrupt_ppm = self.corrupt_ppm;
        spec.latency_us = self.latency_us;
        spec.service = self.service.clone();
        spec.service_fault = self.service_fault.clone();
        spec.replay = Some(trace);
        spec
    }

    /// An open entry for a run of `spec` that broke `signature` (its trace named later).
    fn of_run(spec: &RunSpec, signature: &str, note: &str) -> Entry {
        Entry {
            protocol: spec.protocol.clone(),
            profile: spec.profile.clone(),
            nodes: spec.nodes,
            clients: spec.clients,
            ops: spec.ops,
            seed: spec.seed,
            plan: spec.plan.clone(),
            quiet_at_ms: spec.quiet_at_ms,
            end_ms: spec.end_ms,
            signature: signature.to_string(),
            expected: "violation".into(),
            note: note.to_string(),
            dst_version: env!("CARGO_PKG_VERSION").to_string(),
            trace: String::new(),
            client_checksums: spec.client_checksums,
            strategy: spec.strategy.clone(),
            options: spec.options.clone(),
            byzantine: spec.byzantine,
            behaviour: spec.behaviour.clone(),
            sign_us: spec.sign_us,
            verify_us: spec.verify_us,
            corrupt_ppm: spec.corrupt_ppm,
            latency_us: spec.latency_us,
            shrunk: true,
            service: spec.service.clone(),
            service_fault: spec.service_fault.clone(),
        }
    }

    /// The file name (without extension): entries of other strategies and variants of the
    /// same configuration must not share one.
    fn name(&self) -> String {
        let strategy = if self.strategy == "random" {
            String::new()
        } else {
            format!("-{}", self.strategy.replace(':', "_"))
        };
        let variant = match self.variant() {
            text if text.is_empty() => text,
            text => format!("-v{:08x}", dst_sim::stable_hash(&text) as u32),
        };
        format!(
            "{}-{}-{}{strategy}{variant}-seed{}",
            self.protocol,
            self.profile,
            self.signature.replace(':', "_"),
            self.seed
        )
    }

    /// What tells this entry's run apart from other runs of its protocol and profile,
    /// beyond the property: design options, adversary, model overrides and service ("" for
    /// none, so that entries without any keep their names).
    fn variant(&self) -> String {
        let mut text = String::new();
        if !self.options.is_empty() || self.byzantine.is_some() || self.behaviour.is_some() {
            text = format!("{:?}{:?}{:?}", self.options, self.byzantine, self.behaviour);
        }
        let overrides = [
            self.sign_us,
            self.verify_us,
            self.corrupt_ppm,
            self.latency_us,
        ];
        if overrides.iter().any(Option::is_some)
            || !is_default_service(&self.service)
            || self.service_fault.is_some()
        {
            text.push_str(&format!(
                ";{overrides:?};{};{:?}",
                self.service, self.service_fault
            ));
        }
        text
    }
}

/// Saves a shrunk failure as `<dir>/<name>.json` and `<dir>/<name>.trace`, atomically.
/// Its signature is the property the shrinker kept breaking (the first one the original run
/// broke), not whichever the shrunk run happens to report first: explore keeps one failure
/// per signature before shrinking, and a merge of shard corpora must agree with it.
pub fn save(dir: &Path, shrunk: &Shrunk, note: &str) -> Result<PathBuf, String> {
    let signature = &shrunk.signature;
    if !shrunk
        .outcome
        .violations
        .iter()
        .any(|v| &v.property == signature)
    {
        return Err(format!(
            "the shrunk run does not break [{signature}]: nothing to keep"
        ));
    }
    let entry = Entry::of_run(&shrunk.outcome.spec, signature, note);
    write_entry(dir, entry, "", &shrunk.trace)
}

/// Saves a failure as found, before shrinking, as `<dir>/<name>-unshrunk.json` (and its
/// trace): a campaign killed before it shrinks keeps what it found. The shrunk entry has
/// another name, so a kill while it is written leaves each file whole.
pub fn save_unshrunk(
    dir: &Path,
    spec: &RunSpec,
    trace: &Trace,
    signature: &str,
    note: &str,
) -> Result<PathBuf, String> {
    let entry = Entry {
        shrunk: false,
        ..Entry::of_run(spec, signature, note)
    };
    write_entry(dir, entry, "-unshrunk", trace)
}

/// Removes an entry written by [`save_unshrunk`] once its shrunk version is kept: the entry
/// first, so that no entry ever points at a missing trace.
pub fn remove(entry_path: &Path) -> Result<(), String> {
    let trace = entry_path.with_extension("trace");
    std::fs::remove_file(entry_path)
        .and_then(|()| std::fs::remove_file(&trace))
        .map_err(|e| format!("cannot remove {}: {e}", entry_path.display()))
}

fn write_entry(
    dir: &Path,
    mut entry: Entry,
    suffix: &str,
    trace: &Trace,
) -> Result<PathBuf, String> {
    let name = format!("{}{suffix}", entry.name());
    entry.trace = format!("{name}.trace");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The trace first: an entry never points at a missing trace, even if killed in between.
    trace.write_atomic(&dir.join(&entry.trace))?;
    let json = serde_json::to_string_pretty(&entry).expect("entry serialises");
    let path = dir.join(format!("{name}.json"));
    write_atomic(&path, format!("{json}\n").as_bytes())?;
    Ok(path)
}

/// An entry and its trace, or why it could not be read.
pub type Loaded = Result<(Entry, Trace), String>;

/// Every `*.json` entry in `dir`, in name order; each either parsed or an error naming it.
pub fn load_all(dir: &Path) -> Vec<(PathBuf, Loaded)> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let loaded = load(&path);
            (path, loaded)
        })
        .collect()
}

fn load(path: &Path) -> Loaded {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entry: Entry = serde_json::from_str(&text)
        .map_err(|e| format!("{}: malformed entry: {e}", path.display()))?;
    let trace_path = path.parent().unwrap_or(Path::new(".")).join(&entry.trace);
    let trace = Trace::read(&trace_path)?;
    Ok((entry, trace))
}

/// Replays an entry's trace (its configuration, strategy and options).
pub fn replay(entry: &Entry, trace: Trace) -> Result<RunOutcome, String> {
    runner::run(&entry.spec(trace))
}

/// Replays an entry; Ok(description) if it behaves as expected, Err(why) otherwise.
pub fn check(entry: &Entry, trace: Trace) -> Result<String, String> {
    let outcome = replay(entry, trace)?;
    judge(entry, &outcome)
}

/// Whether a replayed entry behaved as the entry expects.
pub fn judge(entry: &Entry, outcome: &RunOutcome) -> Result<String, String> {
    // A fixed bug changes what its run does, so its trace may stop matching: the replay then
    // continues leniently and must simply pass. An open bug's trace must still match.
    let divergence = outcome
        .summary
        .divergence
        .as_ref()
        .filter(|_| entry.expected != "ok");
    if let Some(divergence) = divergence {
        return Err(format!(
            "the trace no longer matches the code (decision {} wanted {:?}, the trace has {:?}): \
             the entry's meaning changed; re-record it with `dst shrink` and review the change",
            divergence.index, divergence.wanted, divergence.found
        ));
    }
    let broke = outcome
        .violations
        .iter()
        .any(|v| v.property == entry.signature);
    match (
        entry.expected.as_str(),
        broke,
        outcome.violations.is_empty(),
    ) {
        ("violation", true, _) => Ok(format!("still fails with [{}] (open)", entry.signature)),
        ("ok", _, true) => Ok("passes (fixed; kept as a regression)".into()),
        ("violation", false, _) => {
            Err(format!(
            "expected [{}] but the replay gave {:?}: if the bug is fixed, set \"expected\": \"ok\"",
            entry.signature,
            outcome.violations.iter().map(|v| &v.property).collect::<Vec<_>>()
        ))
        }
        ("ok", _, false) => Err(format!("regression: {:?}", outcome.violations)),
        (other, _, _) => Err(format!("unknown expected verdict '{other}'")),
    }
}

/// What a merge did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub read: usize,
    pub kept: usize,
    pub duplicates: usize,
    /// Entries that could not be read, with why (the rest still merge).
    pub errors: Vec<String>,
}

/// Merges corpus folders (for example one per shard) into `into`, keeping one entry per
/// failure signature (protocol, profile, property, client checksums and variant): a shrunk
/// entry before one kept unshrunk by a stopped campaign, then the lowest seed. The strategy that found it is not part of the signature: the
/// same bug found by two strategies is one entry.
pub fn merge(sources: &[PathBuf], into: &Path) -> Result<MergeReport, String> {
    let mut report = MergeReport::default();
    let signature = |e: &Entry| {
        (
            e.protocol.clone(),
            e.profile.clone(),
            e.signature.clone(),
            e.client_checksums,
            e.variant(),
        )
    };
    let mut chosen: std::collections::BTreeMap<_, (Entry, Trace)> = Default::default();
    for (path, loaded) in load_all(into) {
        match loaded {
            Ok((entry, trace)) => {
                chosen.insert(signature(&entry), (entry, trace));
            }
            Err(error) => report.errors.push(format!("{}: {error}", path.display())),
        }
    }
    let existing: std::collections::BTreeSet<_> = chosen.keys().cloned().collect();
    for source in sources {
        for (_, loaded) in load_all(source) {
            report.read += 1;
            let (entry, trace) = match loaded {
                Ok(pair) => pair,
                Err(error) => {
                    report.errors.push(error);
                    continue;
                }
            };
            let key = signature(&entry);
            let rank = |e: &Entry| (!e.shrunk, e.seed);
            let keep_existing = existing.contains(&key)
                || chosen
                    .get(&key)
                    .is_some_and(|(kept, _)| rank(kept) <= rank(&entry));
            let replaced = !keep_existing && chosen.insert(key, (entry, trace)).is_some();
            if keep_existing || replaced {
                report.duplicates += 1;
            }
        }
    }
    std::fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
    for (key, (entry, trace)) in &chosen {
        if existing.contains(key) {
            continue;
        }
        trace.write_atomic(&into.join(&entry.trace))?;
        let json = serde_json::to_string_pretty(entry).expect("entry serialises");
        let name = entry.trace.trim_end_matches(".trace");
        write_atomic(
            &into.join(format!("{name}.json")),
            format!("{json}\n").as_bytes(),
        )?;
        report.kept += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(spec: &RunSpec) -> Entry {
        Entry::of_run(spec, "validity", "")
    }

    #[test]
    fn an_entry_replays_with_the_whole_configuration_of_its_run() {
        for spec in [runner::every_option_set(), RunSpec::new("raft", 3, "heavy")] {
            let replayed = entry(&spec).spec(Trace::default());
            assert_eq!(replayed.trace_header(), spec.trace_header());
        }
    }

    #[test]
    fn model_overrides_and_the_service_name_a_variant() {
        let plain = RunSpec::new("raft", 3, "corruption");
        assert_eq!(entry(&plain).variant(), "", "no variant: old names stay");
        assert_eq!(entry(&plain).name(), "raft-corruption-validity-seed3");
        let mut names = std::collections::BTreeSet::from([entry(&plain).name()]);
        let overrides: [fn(&mut RunSpec); 6] = [
            |s| s.sign_us = Some(7),
            |s| s.verify_us = Some(7),
            |s| s.corrupt_ppm = Some(7),
            |s| s.latency_us = Some(7),
            |s| s.service = "inference".into(),
            |s| s.service_fault = Some("1:split-k".into()),
        ];
        for set in overrides {
            let mut spec = plain.clone();
            set(&mut spec);
            let name = entry(&spec).name();
            assert!(names.insert(name.clone()), "{name} named twice");
        }
    }

    #[test]
    fn a_merge_prefers_a_shrunk_entry_to_an_unshrunk_one_of_a_lower_seed() {
        let root = std::env::temp_dir().join(format!("dst-merge-unit-{}", std::process::id()));
        let (killed, finished, into) = (root.join("a"), root.join("b"), root.join("into"));
        let trace = Trace::default();
        let spec = |seed| RunSpec::new("raft", seed, "corruption");
        save_unshrunk(&killed, &spec(3), &trace, "validity", "").unwrap();
        write_entry(&finished, entry(&spec(7)), "", &trace).unwrap();
        write_entry(&finished, entry(&spec(9)), "", &trace).unwrap();
        let report = merge(&[killed, finished], &into).unwrap();
        assert_eq!((report.read, report.kept, report.duplicates), (3, 1, 2));
        let kept: Vec<Entry> = load_all(&into)
            .into_iter()
            .map(|(_, loaded)| loaded.unwrap().0)
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].shrunk && kept[0].seed == 7, "{kept:?}");
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn an_entry_without_the_new_fields_reads_as_before() {
        let text = r#"{"protocol":"raft","profile":"none","nodes":3,"clients":1,"ops":1,"seed":1,
            "plan":null,"quiet_at_ms":1,"end_ms":2,"signature":"x","expected":"ok","note":"",
            "dst_version":"0","trace":"t.trace"}"#;
        let entry: Entry = serde_json::from_str(text).expect("old entry parses");
        assert_eq!((entry.service.as_str(), entry.latency_us), ("kv", None));
        assert!(
            entry.shrunk,
            "entries from before unshrunk ones existed were shrunk"
        );
        let written = serde_json::to_string(&entry).unwrap();
        assert!(
            !written.contains("service") && !written.contains("latency_us"),
            "{written}"
        );
        assert!(!written.contains("shrunk"), "{written}");
    }
}
