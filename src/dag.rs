//! Render the graph as text, Graphviz dot or Mermaid: node by node, or stage by stage
//! (`--stages`: one box per stage with its node count, for pipelines whose node graph is too
//! big to read or for GitHub to render).

use std::collections::BTreeSet;

use crate::graph::Graph;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
    /// `{"nodes": [{"id", "kind", "inputs": [ids]}]}` (with --stages, one entry per stage).
    Json,
}

/// What is drawn: boxes and, per box, the boxes it takes input from.
struct View {
    boxes: Vec<Entry>,
    inputs: Vec<BTreeSet<usize>>,
}

struct Entry {
    /// A node id, or a stage name with --stages.
    id: String,
    /// What the box says: the id, with --stages and a matrix the node count too.
    label: String,
    kind: String,
}

fn nodes_view(graph: &Graph) -> View {
    let boxes = graph
        .nodes
        .iter()
        .map(|n| Entry { id: n.id.clone(), label: n.id.clone(), kind: n.kind.clone() })
        .collect();
    let inputs = graph.inputs.iter().map(|ins| ins.iter().copied().collect()).collect();
    View { boxes, inputs }
}

fn stages_view(graph: &Graph) -> View {
    let mut boxes: Vec<Entry> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut stage_of = Vec::with_capacity(graph.nodes.len());
    let mut position: std::collections::HashMap<&str, usize> = Default::default();
    for node in &graph.nodes {
        let at = *position.entry(&node.stage).or_insert_with(|| {
            let label = node.stage.clone();
            boxes.push(Entry { id: label.clone(), label, kind: node.kind.clone() });
            counts.push(0);
            boxes.len() - 1
        });
        counts[at] += 1;
        stage_of.push(at);
    }
    for (b, n) in boxes.iter_mut().zip(&counts) {
        if *n > 1 {
            b.label = format!("{} ({n} nodes)", b.id);
        }
    }
    let mut inputs = vec![BTreeSet::new(); boxes.len()];
    for (i, ins) in graph.inputs.iter().enumerate() {
        inputs[stage_of[i]].extend(ins.iter().map(|&j| stage_of[j]));
    }
    View { boxes, inputs }
}

pub fn render(graph: &Graph, format: DagFormat, by_stage: bool) -> String {
    let view = if by_stage { stages_view(graph) } else { nodes_view(graph) };
    let mut out = String::new();
    let edges = || {
        view.inputs.iter().enumerate().flat_map(|(to, ins)| ins.iter().map(move |&from| (from, to)))
    };
    match format {
        DagFormat::Text => {
            for (b, ins) in view.boxes.iter().zip(&view.inputs) {
                let inputs: Vec<&str> = ins.iter().map(|&j| view.boxes[j].label.as_str()).collect();
                if inputs.is_empty() {
                    out.push_str(&format!("{} ({})\n", b.label, b.kind));
                } else {
                    out.push_str(&format!("{} ({}) <- {}\n", b.label, b.kind, inputs.join(", ")));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str(
                "digraph wormflow {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for (i, b) in view.boxes.iter().enumerate() {
                out.push_str(&format!(
                    "  n{i} [label={:?}];\n",
                    format!("{}\n{}", b.label, b.kind)
                ));
            }
            for (from, to) in edges() {
                out.push_str(&format!("  n{from} -> n{to};\n"));
            }
            out.push_str("}\n");
        }
        DagFormat::Json => {
            let nodes: Vec<serde_json::Value> = view
                .boxes
                .iter()
                .zip(&view.inputs)
                .map(|(b, ins)| {
                    let inputs: Vec<&str> =
                        ins.iter().map(|&j| view.boxes[j].id.as_str()).collect();
                    serde_json::json!({"id": b.id, "kind": b.kind, "inputs": inputs})
                })
                .collect();
            out.push_str(&serde_json::json!({ "nodes": nodes }).to_string());
            out.push('\n');
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, b) in view.boxes.iter().enumerate() {
                let label = b.label.replace('"', "#quot;");
                out.push_str(&format!("  n{i}[\"{label}<br/><i>{}</i>\"]\n", b.kind));
            }
            for (from, to) in edges() {
                out.push_str(&format!("  n{from} --> n{to}\n"));
            }
        }
    }
    out
}
