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
}

/// What is drawn: boxes (label, kind) and edges (from, to) between them.
struct View {
    boxes: Vec<(String, String)>,
    edges: BTreeSet<(usize, usize)>,
}

fn nodes_view(graph: &Graph) -> View {
    let boxes = graph.nodes.iter().map(|n| (n.id.clone(), n.kind.clone())).collect();
    let edges = graph
        .inputs
        .iter()
        .enumerate()
        .flat_map(|(i, ins)| ins.iter().map(move |&j| (j, i)))
        .collect();
    View { boxes, edges }
}

fn stages_view(graph: &Graph) -> View {
    let mut stages: Vec<(&str, &str, usize)> = Vec::new(); // name, kind, nodes; in plan order
    let mut stage_of = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let at = match stages.iter().position(|(s, _, _)| *s == node.stage) {
            Some(at) => at,
            None => {
                stages.push((&node.stage, &node.kind, 0));
                stages.len() - 1
            }
        };
        stages[at].2 += 1;
        stage_of.push(at);
    }
    let boxes = stages
        .iter()
        .map(|(name, kind, n)| {
            let label = if *n == 1 { name.to_string() } else { format!("{name} ({n} nodes)") };
            (label, kind.to_string())
        })
        .collect();
    let edges = graph
        .inputs
        .iter()
        .enumerate()
        .flat_map(|(i, ins)| ins.iter().map(move |&j| (j, i)))
        .map(|(j, i)| (stage_of[j], stage_of[i]))
        .collect();
    View { boxes, edges }
}

pub fn render(graph: &Graph, format: DagFormat, by_stage: bool) -> String {
    let view = if by_stage { stages_view(graph) } else { nodes_view(graph) };
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for (i, (label, kind)) in view.boxes.iter().enumerate() {
                let inputs: Vec<&str> = view
                    .edges
                    .iter()
                    .filter(|(_, to)| *to == i)
                    .map(|(from, _)| view.boxes[*from].0.as_str())
                    .collect();
                if inputs.is_empty() {
                    out.push_str(&format!("{label} ({kind})\n"));
                } else {
                    out.push_str(&format!("{label} ({kind}) <- {}\n", inputs.join(", ")));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str(
                "digraph wormflow {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for (i, (label, kind)) in view.boxes.iter().enumerate() {
                out.push_str(&format!("  n{i} [label={:?}];\n", format!("{label}\n{kind}")));
            }
            for (from, to) in &view.edges {
                out.push_str(&format!("  n{from} -> n{to};\n"));
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, (label, kind)) in view.boxes.iter().enumerate() {
                let label = label.replace('"', "#quot;");
                out.push_str(&format!("  n{i}[\"{label}<br/><i>{kind}</i>\"]\n"));
            }
            for (from, to) in &view.edges {
                out.push_str(&format!("  n{from} --> n{to}\n"));
            }
        }
    }
    out
}
