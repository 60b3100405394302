//! Crashes and concurrency: `kill -9` mid-run loses nothing that finished and corrupts
//! nothing; two runs on one store share the work.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Events, Workspace};

/// 4 × 3 nodes that each take a little while and write a few hundred KB.
const SLOW: &str = r#"
[pipeline]
name = "slow"

[stages.a]
kind = "command"
matrix = { i = [1, 2, 3, 4] }
params = { cmd = "sleep 0.15; echo ${matrix.i} >> $WORKSPACE_LOG; seq 1 60000 > $WORMFLOW_OUT/data.txt; echo ${matrix.i} > $WORMFLOW_OUT/i.txt" }

[stages.b]
kind = "command"
needs = ["a"]
matrix = { i = [1, 2, 3, 4] }
params = { cmd = "sleep 0.1; echo b${matrix.i} >> $WORKSPACE_LOG; cat $WORMFLOW_INPUT_A/data.txt $WORMFLOW_INPUT_A/i.txt > $WORMFLOW_OUT/b.txt" }

[stages.c]
kind = "command"
needs = ["b"]
params = { cmd = "echo c >> $WORKSPACE_LOG; cat $WORMFLOW_INPUT_B/*/b.txt | wc -l > $WORMFLOW_OUT/lines.txt" }
"#;

const N_NODES: usize = 9;

fn spawn_run(ws: &Workspace) -> std::process::Child {
    ws.cmd(&["run", "--json", "-j", "2"])
        .env("WORKSPACE_LOG", ws.file("ran.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_at_several_points_then_run_completes_and_verifies() {
    let ws = Workspace::new(SLOW);
    for delay_ms in [150, 450, 650, 850, 1100] {
        let mut child = spawn_run(&ws);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        // Whatever was stored is intact.
        let out = ws.wf(&["verify"]);
        assert!(out.status.success(), "after kill at {delay_ms} ms: {}", common::text(&out.stdout));
    }
    std::thread::sleep(Duration::from_millis(500)); // let orphaned commands finish
    let out = ws.cmd(&["run", "--json"]).env("WORKSPACE_LOG", ws.file("ran.log")).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let ev = Events::parse(&common::text(&out.stdout));
    assert_eq!(ev.ran().len() + ev.cached().len(), N_NODES);
    assert!(!ev.cached().is_empty(), "work finished before the kills was kept");
    ws.ok(&["verify"]);
    assert_eq!(ws.read("results/c/lines.txt").trim(), "240004");
    let second = ws.run_events(&[]);
    assert_eq!(second.cached().len(), N_NODES);
    // What a kill cut short (temporaries of atomic writes) is garbage gc removes.
    ws.write("cache/actions/00/.tmp-1-2-3", "{\"half\": ");
    ws.ok(&["verify"]);
    ws.ok(&["gc"]);
    assert!(!ws.file("cache/actions/00/.tmp-1-2-3").exists());
}

#[test]
fn two_runs_at_once_share_the_work() {
    let ws = Workspace::new(SLOW);
    let first = spawn_run(&ws);
    let second = spawn_run(&ws);
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let (ea, eb) =
        (Events::parse(&common::text(&a.stdout)), Events::parse(&common::text(&b.stdout)));
    // Each run saw every node, and every node ran exactly once in total.
    assert_eq!(ea.ran().len() + ea.cached().len(), N_NODES);
    assert_eq!(eb.ran().len() + eb.cached().len(), N_NODES);
    let mut ran: Vec<String> = ea.ran().into_iter().chain(eb.ran()).collect();
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), N_NODES);
    assert_eq!(ea.ran().len() + eb.ran().len(), N_NODES, "a node ran twice");
    let log = ws.read("ran.log");
    assert_eq!(log.lines().count(), N_NODES, "commands executed: {log}");
    ws.ok(&["verify"]);
    assert_eq!(ws.read("results/c/lines.txt").trim(), "240004");
}

#[test]
fn gc_waits_for_a_running_run() {
    let ws = Workspace::new(SLOW);
    let run = spawn_run(&ws);
    std::thread::sleep(Duration::from_millis(100));
    let gc = ws.ok(&["gc"]);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    // gc took the exclusive lock after the run released its shared one: nothing it had
    // stored was collected.
    assert!(gc.contains("removed 0 action records"), "{gc}");
    assert_eq!(ws.run_events(&[]).cached().len(), N_NODES);
}
