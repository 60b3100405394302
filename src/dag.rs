//! Render the node graph as text, Graphviz dot or Mermaid.

use crate::cli::DagFormat;
use crate::graph::Graph;

pub fn render(graph: &Graph, format: DagFormat) -> String {
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for (i, node) in graph.nodes.iter().enumerate() {
                let inputs: Vec<&str> =
                    graph.inputs[i].iter().map(|&j| graph.nodes[j].id.as_str()).collect();
                if inputs.is_empty() {
                    out.push_str(&format!("{} ({})\n", node.id, node.kind));
                } else {
                    out.push_str(&format!(
                        "{} ({}) <- {}\n",
                        node.id,
                        node.kind,
                        inputs.join(", ")
                    ));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str(
                "digraph wormflow {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for node in &graph.nodes {
                out.push_str(&format!(
                    "  {:?} [label={:?}];\n",
                    node.id,
                    format!("{}\n{}", node.id, node.kind)
                ));
            }
            for (i, ins) in graph.inputs.iter().enumerate() {
                for &j in ins {
                    out.push_str(&format!(
                        "  {:?} -> {:?};\n",
                        graph.nodes[j].id, graph.nodes[i].id
                    ));
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, node) in graph.nodes.iter().enumerate() {
                let label = node.id.replace('"', "#quot;");
                out.push_str(&format!("  n{i}[\"{label}<br/><i>{}</i>\"]\n", node.kind));
            }
            for (i, ins) in graph.inputs.iter().enumerate() {
                for &j in ins {
                    out.push_str(&format!("  n{j} --> n{i}\n"));
                }
            }
        }
    }
    out
}
