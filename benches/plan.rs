//! How much of a 10,000-node plan is recomputed after a one-value edit (salsa).
//! Run with `cargo bench --bench plan`.

use std::sync::Arc;
use std::time::Instant;

use salsa::Setter;
use wormflow::kinds::Registry;
use wormflow::plan::{graph, PipelineSource, PlanDb, COUNTERS};

fn pipeline(depth: usize, width: usize, value: &str) -> String {
    let values: Vec<String> = (0..width).map(|i| i.to_string()).collect();
    let mut s = String::from("[pipeline]\nname = \"bench\"\n\n");
    for d in 0..depth {
        s += &format!(
            "[stages.s{d}]\nkind = \"command\"\nmatrix = {{ i = [{}] }}\n",
            values.join(", ")
        );
        if d > 0 {
            s += &format!("needs = [\"s{}\"]\n", d - 1);
        }
        let v = if d == depth / 2 { value } else { "1" };
        s += &format!("params = {{ cmd = \"echo ${{matrix.i}} > $WORMFLOW_OUT/x\", v = {v} }}\n\n");
    }
    s
}

fn main() {
    let mut registry = Registry::new();
    registry.register(Arc::new(wormflow::exec::command::CommandKind));
    let mut db = PlanDb::new(registry);
    let src = PipelineSource::new(&db, "pipeline.toml".into(), pipeline(10, 1000, "1"), vec![]);
    let t = Instant::now();
    let g = graph(&db, src).clone().expect("plans");
    let first = t.elapsed();
    let before = COUNTERS.snapshot();
    src.set_text(&mut db).to(pipeline(10, 1000, "2"));
    let t = Instant::now();
    let g2 = graph(&db, src).clone().expect("plans");
    let again = t.elapsed();
    let after = COUNTERS.snapshot();
    let changed =
        g.nodes.iter().zip(&g2.nodes).filter(|(a, b)| a.recipe_hash != b.recipe_hash).count();
    println!("first plan: {} nodes in {:.1} ms", g.nodes.len(), first.as_secs_f64() * 1e3);
    println!(
        "after editing one value: re-planned in {:.1} ms; re-expanded {} of 10 stages, {} of {} nodes ({} recipes changed); parsed {}x",
        again.as_secs_f64() * 1e3,
        after[1] - before[1],
        after[2] - before[2],
        g2.nodes.len(),
        changed,
        after[0] - before[0]
    );
}
