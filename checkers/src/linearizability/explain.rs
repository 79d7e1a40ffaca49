//! A small self-contained HTML view of a check: operations per client on a time axis, the
//! (partial) linearization numbered on them, the failing operation, and annotations (faults)
//! drawn beside them. When the history is not linearizable only the first illegal partition
//! is drawn.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{CheckReport, Model, Verdict};
use crate::history::{History, Outcome};
use crate::readers::Annotation;

const STEP_PX: usize = 14;
const ROW_PX: usize = 24;
const LEFT_PX: usize = 70;
const TOP_PX: usize = 40;
const LABEL_FITS_PX: usize = 90;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the explanation page.
pub fn html<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    report: &CheckReport,
    title: &str,
    annotations: &[Annotation],
) -> String {
    let illegal = report.first_illegal();
    let shown: Vec<usize> = match illegal {
        Some(partition) => partition.operations.clone(),
        None => (0..history.operations.len()).collect(),
    };
    // Rank in the linearization (or the longest prefix) per operation.
    let mut rank: BTreeMap<usize, usize> = BTreeMap::new();
    match illegal {
        Some(partition) => rank.extend(
            partition
                .longest_prefix
                .iter()
                .enumerate()
                .map(|(i, &op)| (op, i)),
        ),
        None => {
            for partition in &report.partitions {
                rank.extend(
                    partition
                        .linearization
                        .iter()
                        .enumerate()
                        .map(|(i, &op)| (op, i)),
                );
            }
        }
    }
    let failing = illegal.and_then(|partition| partition.failing_operation);
    // Compress positions to ranks so the picture stays small.
    let mut positions: Vec<u64> = shown
        .iter()
        .flat_map(|&i| [history.operations[i].call, history.operations[i].ret])
        .chain(annotations.iter().map(|a| a.position))
        .filter(|&p| p != u64::MAX)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let x = |position: u64| {
        let index = positions.partition_point(|&p| p < position);
        LEFT_PX + index * STEP_PX
    };
    let end_x = LEFT_PX + (positions.len() + 2) * STEP_PX;
    let clients: Vec<u64> = {
        let mut clients: Vec<u64> = shown
            .iter()
            .map(|&i| history.operations[i].client)
            .collect();
        clients.sort_unstable();
        clients.dedup();
        clients
    };
    let height = TOP_PX + clients.len() * ROW_PX + 20;
    let mut svg = String::new();
    for (row, client) in clients.iter().enumerate() {
        let y = TOP_PX + row * ROW_PX;
        let _ = write!(
            svg,
            r#"<text x="4" y="{}" class="client">client {client}</text>"#,
            y + 15
        );
    }
    for annotation in annotations {
        let ax = x(annotation.position);
        let label = escape(&annotation.label);
        let _ = write!(
            svg,
            r#"<line x1="{ax}" y1="12" x2="{ax}" y2="{height}" class="fault"/><text x="{ax}" y="10" class="fault">{label}</text>"#
        );
    }
    for &index in &shown {
        let operation = &history.operations[index];
        let row = clients.binary_search(&operation.client).unwrap_or(0);
        let y = TOP_PX + row * ROW_PX;
        let (x0, x1) = (
            x(operation.call),
            if operation.ret == u64::MAX {
                end_x
            } else {
                x(operation.ret)
            },
        );
        let output = match &operation.outcome {
            Outcome::Ok(output) => Some(output),
            _ => None,
        };
        let class = if Some(index) == failing {
            "failing"
        } else if rank.contains_key(&index) {
            "linearized"
        } else if operation.outcome == Outcome::Fail {
            "failed"
        } else if operation.outcome == Outcome::Unknown {
            "unknown"
        } else {
            "pending"
        };
        let label = escape(&model.describe(&operation.input, output));
        let number = rank
            .get(&index)
            .map_or(String::new(), |r| format!("#{} ", r + 1));
        // Labels that do not fit stay in the tooltip.
        let shown_label = if x1 - x0 >= LABEL_FITS_PX {
            label.as_str()
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<g class="{class}"><title>op {index} (client {}): {label}</title><rect x="{x0}" y="{y}" width="{}" height="{}" rx="3"/><text x="{}" y="{}">{number}{shown_label}</text></g>"#,
            operation.client,
            (x1 - x0).max(4),
            ROW_PX - 4,
            x0 + 3,
            y + 14,
        );
    }
    let order: Vec<String> = match illegal {
        Some(partition) => partition.longest_prefix.clone(),
        None => report
            .partitions
            .iter()
            .flat_map(|p| p.linearization.clone())
            .collect(),
    }
    .iter()
    .map(|&i| {
        let operation = &history.operations[i];
        let output = match &operation.outcome {
            Outcome::Ok(output) => Some(output),
            _ => None,
        };
        format!(
            "<li>op {i}: {}</li>",
            escape(&model.describe(&operation.input, output))
        )
    })
    .collect();
    let partial = illegal
        .and_then(|partition| {
            let failing = failing?;
            let (_, snapshot) = partition
                .longest_partial
                .iter()
                .find(|(op, _)| *op == failing)?;
            partition.partial_linearizations.get(*snapshot)
        })
        .map_or(String::new(), |order| {
            let ops: Vec<String> = order.iter().map(|op| format!("op {op}")).collect();
            format!(
                "<h4>Longest partial linearization containing the failing operation</h4><p>{}</p>",
                ops.join(" &rarr; ")
            )
        });
    let summary = match (report.verdict, illegal) {
        (Verdict::NotLinearizable, Some(partition)) => format!(
            "Not linearizable (partition {:?}). The longest linearizable prefix is numbered; op {} (red) cannot be placed after it.",
            partition.name,
            failing.map_or("?".to_string(), |f| f.to_string())
        ),
        (Verdict::Linearizable, _) => "Linearizable: the numbers give a linearization.".to_string(),
        _ => format!("Unknown: undecided partitions {:?}.", report.undecided),
    };
    format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:sans-serif;font-size:13px}} svg text{{font-size:11px}} .client{{fill:#333}}
g rect{{stroke:#555;fill:#ddd}} .linearized rect{{fill:#b9e3b0}} .failing rect{{fill:#f4a3a3;stroke:#c00;stroke-width:2}}
.unknown rect{{fill:#eee;stroke-dasharray:4 2}} .failed rect{{fill:#fafafa;stroke:#bbb}} .pending rect{{fill:#f3e2a9}}
line.fault{{stroke:#c60;stroke-dasharray:3 3}} text.fault{{fill:#c60}}
</style></head><body><h3>{title}</h3><p>{summary}</p><div style="overflow-x:auto"><svg width="{}" height="{height}">{svg}</svg></div>
<h4>Order</h4><ol>{}</ol>{partial}</body></html>
"#,
        end_x + 200,
        order.join("")
    )
}
