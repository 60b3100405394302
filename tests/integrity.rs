//! Store integrity as an adversarial user tries it: results never wrong or lost, nothing
//! written outside the workspace, no process left behind, errors that name the place.
//! One test per case of issue #10; each checks the exit code, the message and — where
//! data is involved — that `verify` is clean and every result's bytes are right.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{text, Workspace};

/// Run and expect exit code `code`; returns stdout + stderr.
fn exits(ws: &Workspace, args: &[&str], code: i32) -> String {
    let out = ws.wf(args);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "wormflow {args:?}:\n{all}");
    all
}

fn contains_all(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "expected {n:?} in:\n{haystack}");
    }
}

fn verify_clean(ws: &Workspace) {
    let out = ws.ok(&["verify"]);
    assert!(out.contains("all intact"), "{out}");
}

const GEN: &str = "[pipeline]\nname = \"t\"\n[stages.gen]\nkind = \"command\"\nparams = { cmd = \"echo hello > $WORMFLOW_OUT/data.txt\" }\n";

/// Processes whose command line contains `pattern` (other than pgrep itself).
fn running(pattern: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-f", pattern]).output().expect("pgrep");
    text(&out.stdout).lines().map(str::to_string).collect()
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- Wrong or lost results ----

#[test]
fn a_stage_needed_twice_is_refused() {
    let ws = Workspace::new(&format!("{GEN}[stages.use]\nkind = \"command\"\nneeds = [\"gen\", \"gen\"]\nparams = {{ cmd = \"cat $WORMFLOW_INPUT_GEN/data.txt > $WORMFLOW_OUT/d\" }}\n"));
    let err = ws.bad(&["run"]);
    contains_all(&err, &["pipeline.toml:", "needs \"gen\" twice"]);
    assert_eq!(ws.object_count(), 0);
}

#[test]
fn matrix_values_never_share_a_node_id() {
    for values in ["[1, \"1\"]", "[true, \"true\"]"] {
        let ws = Workspace::new(&format!("[pipeline]\nname = \"t\"\n[stages.g]\nkind = \"command\"\nmatrix = {{ n = {values} }}\nparams = {{ cmd = \"echo ${{matrix.n}} > $WORMFLOW_OUT/v\" }}\n"));
        // A string that reads as a number gets a quoted id, so both nodes exist.
        let dag = ws.ok(&["dag"]);
        assert!(dag.contains("g[n=\"1\"]") || dag.contains("g[n=\"true\"]"), "{dag}");
        // Both compute the same thing (same recipe, so one key): the second finds it stored.
        let ev = ws.run_events(&[]);
        assert_eq!(ev.ran().len() + ev.cached().len(), 2, "{:?}", ev.0);
        assert_eq!(
            common::count_files(&ws.file("results")),
            2 * 2,
            "one dir (file + key marker) per node"
        );
        verify_clean(&ws);
    }
    // Values holding the id's separators are quoted too: two nodes, two results.
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.g]\nkind = \"command\"\nmatrix = { a = [\"1\", \"1,b=2\"] }\nparams = { cmd = \"printf %s '${matrix.a}' > $WORMFLOW_OUT/v\" }\n");
    let ev = ws.run_events(&[]);
    let mut ran = ev.ran();
    ran.sort();
    assert_eq!(ran, ["g[a=\"1\"]", "g[a=\"1,b=2\"]"]);
    let dirs: Vec<_> =
        std::fs::read_dir(ws.file("results/g")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let mut values: Vec<String> =
        dirs.iter().map(|d| ws.read(&format!("results/g/{}/v", d.to_string_lossy()))).collect();
    values.sort();
    assert_eq!(values, ["1", "1,b=2"]);
}

#[test]
fn long_names_are_refused_or_shortened() {
    let long = "s".repeat(300);
    let ws = Workspace::new(&format!("[pipeline]\nname = \"t\"\n[stages.{long}]\nkind = \"command\"\nparams = {{ cmd = \"echo x > $WORMFLOW_OUT/a\" }}\n"));
    let err = ws.bad(&["run"]);
    contains_all(&err, &["300 characters long", "at most 100"]);
    assert_eq!(ws.action_count(), 0);
    // A long matrix value makes a long node id: its file names are shortened with a hash.
    let value = "v".repeat(400);
    let ws = Workspace::new(&format!("[pipeline]\nname = \"t\"\n[stages.g]\nkind = \"command\"\nmatrix = {{ x = [\"{value}\"] }}\nparams = {{ cmd = \"echo x > $WORMFLOW_OUT/a\" }}\n"));
    ws.run_events(&[]);
    assert!(ws.ok(&["status"]).contains("1 fresh"));
    let dir = std::fs::read_dir(ws.file("results/g")).unwrap().next().unwrap().unwrap();
    let name = dir.file_name();
    assert!(
        name.len() <= 255 && name.to_string_lossy().contains('~'),
        "x= and a shortened value: {name:?}"
    );
    assert_eq!(ws.read(&format!("results/g/{}/a", dir.file_name().to_string_lossy())), "x\n");
}

#[test]
fn a_command_writing_into_its_input_cannot_change_the_store() {
    let ws = Workspace::new(&format!(
        "{GEN}[stages.writer]\nkind = \"command\"\nneeds = [\"gen\"]\nparams = {{ cmd = \"echo X > $WORMFLOW_INPUT_GEN/data.txt; cat $WORMFLOW_INPUT_GEN/data.txt > $WORMFLOW_OUT/d\" }}\n[stages.reader]\nkind = \"command\"\nneeds = [\"gen\", \"writer\"]\nparams = {{ cmd = \"cat $WORMFLOW_INPUT_GEN/data.txt > $WORMFLOW_OUT/d\" }}\n"
    ));
    ws.run_events(&[]);
    assert_eq!(ws.read("results/writer/d"), "X\n", "the writer sees its own private copy");
    assert_eq!(ws.read("results/reader/d"), "hello\n", "a later node reads the stored bytes");
    assert_eq!(ws.read("results/gen/data.txt"), "hello\n");
    verify_clean(&ws);
}

#[test]
fn rotted_bytes_are_caught_when_a_node_reads_them() {
    let ws = Workspace::new(&format!("{GEN}[stages.use]\nkind = \"command\"\nneeds = [\"gen\"]\nparams = {{ cmd = \"cat $WORMFLOW_INPUT_GEN/data.txt > $WORMFLOW_OUT/d\" }}\n"));
    ws.run_events(&[]);
    // Rot the object's bytes (same size) and put its mtime back: a stat sees nothing.
    let object = walk_files(&ws.file("cache/objects"))
        .into_iter()
        .find(|p| std::fs::read(p).unwrap() == b"hello\n")
        .unwrap();
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&object, b"hellp\n").unwrap();
    let f = std::fs::File::open(&object).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap();
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert!(ws.ok(&["status"]).contains("2 fresh"), "status trusts the stat, by design");
    let out = exits(&ws, &["run", "--force", "use"], 1);
    contains_all(
        &out,
        &["use: its input data.txt from gen is damaged in the store", "recomputes gen"],
    );
    // The next run recomputes gen (its object is gone); use's result, made from the good
    // bytes, is current again.
    let ev = ws.run_events(&[]);
    assert_eq!((ev.ran(), ev.cached()), (vec!["gen".to_string()], vec!["use".to_string()]));
    assert_eq!(ws.read("results/use/d"), "hello\n");
    verify_clean(&ws);
}

#[test]
fn two_downloads_of_one_file_name_are_refused() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"a/x.h5\" }, { url = \"b/x.h5\" }] }\n");
    ws.write("a/x.h5", "a");
    ws.write("b/x.h5", "b");
    let err = ws.bad(&["run"]);
    contains_all(
        &err,
        &["a/x.h5 and b/x.h5 would both be written to \"x.h5\"", "path = \"b/x.h5\""],
    );
    // With their own paths both arrive.
    ws.write("pipeline.toml", "[pipeline]\nname = \"t\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"a/x.h5\", path = \"a/x.h5\" }, { url = \"b/x.h5\", path = \"b/x.h5\" }] }\n");
    ws.run_events(&[]);
    assert_eq!(ws.read("results/get/a/x.h5") + &ws.read("results/get/b/x.h5"), "ab");
}

#[test]
fn gc_keeps_what_another_pipeline_sharing_the_store_uses() {
    let ws = Workspace::new(GEN);
    ws.write("other.toml", "[pipeline]\nname = \"o\"\n[stages.model]\nkind = \"command\"\nparams = { cmd = \"echo weights > $WORMFLOW_OUT/w\" }\n");
    ws.run_events(&[]);
    ws.ok(&["-f", "other.toml", "run"]);
    let dry = ws.ok(&["gc", "-n"]);
    contains_all(
        &dry,
        &["keeping 1 results for", "other.toml (last run", "would remove 0 action records"],
    );
    ws.ok(&["gc"]);
    assert!(
        ws.ok(&["-f", "other.toml", "status"]).contains("1 fresh"),
        "gc from pipeline.toml kept other.toml's result"
    );
    // An edit makes gen's old result garbage; the dry run names it and whom the rest is for.
    ws.write("pipeline.toml", &GEN.replace("hello", "hi"));
    ws.run_events(&[]);
    std::fs::remove_file(ws.file("cache/refs/gen")).unwrap();
    let dry = ws.ok(&["gc", "-n"]);
    contains_all(
        &dry,
        &["would remove the results of 1 node records no pipeline reaches:", "  gen", "other.toml"],
    );
    // A pipeline whose file is gone keeps nothing; --forget releases one explicitly.
    std::fs::rename(ws.file("other.toml"), ws.file("gone.toml")).unwrap();
    let out = ws.ok(&["gc"]);
    contains_all(&out, &["other.toml (file gone; its results are released)"]);
    assert!(ws.ok(&["-f", "gone.toml", "status"]).contains("1 stale"));
    verify_clean(&ws);
}

#[test]
fn an_edited_or_removed_results_file_is_reported_and_restored() {
    let ws = Workspace::new(GEN);
    ws.run_events(&[]);
    let file = ws.file("results/gen/data.txt");
    // As root the read-only bit does not stop a write; either way the store is untouched.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&file, "666\n").unwrap();
    verify_clean(&ws);
    contains_all(
        &ws.ok(&["status"]),
        &["results/ data.txt was edited (`wormflow run` restores it)"],
    );
    let out = exits(&ws, &["run"], 0);
    contains_all(&out, &["gen: results/ data.txt was edited; restored it from the store"]);
    assert_eq!(ws.read("results/gen/data.txt"), "hello\n");
    std::fs::remove_file(&file).unwrap();
    contains_all(&exits(&ws, &["run"], 0), &["data.txt was removed; restored it"]);
    assert_eq!(ws.read("results/gen/data.txt"), "hello\n");
    // Results are copies: the workspace moved elsewhere still shows them.
    let moved = tempfile::tempdir().unwrap();
    let to = moved.path().join("ws");
    std::fs::rename(ws.path(), &to).unwrap();
    assert_eq!(std::fs::read_to_string(to.join("results/gen/data.txt")).unwrap(), "hello\n");
    std::fs::rename(&to, ws.path()).unwrap();
}

// ---- Reaching outside the workspace ----

#[test]
fn an_output_dir_replaced_by_a_link_or_a_linked_user_file_is_never_taken() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.swap]\nkind = \"command\"\nparams = { cmd = \"rm -rf $WORMFLOW_OUT && ln -s $PWD/mine $WORMFLOW_OUT\" }\n");
    ws.write("mine/precious.txt", "mine\n");
    let out = exits(&ws, &["run"], 1);
    contains_all(&out, &["swap: its output directory ($WORMFLOW_OUT) was replaced by a link or a file; nothing was stored"]);
    assert_eq!(ws.read("mine/precious.txt"), "mine\n", "the user's directory is untouched");
    assert_eq!(ws.object_count(), 0);

    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.link]\nkind = \"command\"\nparams = { cmd = \"ln $PWD/user.txt $WORMFLOW_OUT/u.txt\" }\n");
    ws.write("user.txt", "draft\n");
    let before = std::fs::metadata(ws.file("user.txt")).unwrap();
    ws.run_events(&[]);
    let after = std::fs::metadata(ws.file("user.txt")).unwrap();
    assert_eq!(
        (after.mode(), after.mtime()),
        (before.mode(), before.mtime()),
        "the user's file keeps its mode and mtime"
    );
    std::fs::write(ws.file("user.txt"), "edited\n").unwrap();
    verify_clean(&ws);
    assert_eq!(ws.read("results/link/u.txt"), "draft\n");
}

#[test]
fn only_a_marked_store_is_written_collected_or_repaired() {
    // A user's folder with store-like names in it.
    let ws = Workspace::new(&GEN.replace("name = \"t\"", "name = \"t\"\nstore = \"mine\""));
    for f in ["mine/tmp/notes.txt", "mine/refs/list.txt", "mine/locks/x"] {
        ws.write(f, "keep\n");
    }
    for cmd in [&["run"][..], &["gc"], &["verify", "--repair"]] {
        let out = exits(&ws, cmd, 2);
        assert!(out.contains("is not a wormflow store"), "{cmd:?}: {out}");
    }
    for f in ["mine/tmp/notes.txt", "mine/refs/list.txt", "mine/locks/x"] {
        assert_eq!(ws.read(f), "keep\n");
    }
    // `store = "/"`: refused before anything is looked at (a dry run, to be safe).
    let ws = Workspace::new(&GEN.replace("name = \"t\"", "name = \"t\"\nstore = \"/\""));
    for cmd in [&["gc", "-n"][..], &["verify"], &["run"]] {
        let out = exits(&ws, cmd, 2);
        assert!(out.contains("store = \"/\" overlaps the results directory"), "{cmd:?}: {out}");
    }
    // A store inside results/ (where relinking would delete it), or results/ inside it.
    for store in ["results", "results/cache", "."] {
        let ws = Workspace::new(&format!("[pipeline]\nname = \"t\"\nstore = \"{store}\"\n[stages.objects]\nkind = \"command\"\nparams = {{ cmd = \"echo x > $WORMFLOW_OUT/a\" }}\n"));
        let err = ws.bad(&["run"]);
        assert!(
            err.contains("overlaps the results directory")
                || err.contains("is the workspace itself"),
            "{store}: {err}"
        );
    }
    // A store made by wormflow carries the marker and works as before.
    let ws = Workspace::new(GEN);
    ws.run_events(&[]);
    assert!(ws.read("cache/wormflow-store.toml").contains("format = 1"));
}

#[test]
fn a_remote_record_pointing_outside_is_refused() {
    let remote = tempfile::tempdir().unwrap();
    let pipeline = format!("{GEN}[remotes.lab]\nurl = \"{}\"\n", remote.path().display());
    let ws = Workspace::new(&pipeline);
    ws.run_events(&[]);
    ws.ok(&["push"]);
    let record = walk_files(&remote.path().join("actions")).pop().unwrap();
    let text = std::fs::read_to_string(&record)
        .unwrap()
        .replace("\"data.txt\"", "\"../../../escaped.txt\"");
    std::fs::write(&record, text).unwrap();
    let teammate = Workspace::new(&pipeline);
    let out = exits(&teammate, &["pull"], 2);
    contains_all(
        &out,
        &[
            "output path \"../../../escaped.txt\" has an empty, `.` or `..` part",
            "it was not imported",
        ],
    );
    let run = exits(&teammate, &["run", "--pull"], 0);
    contains_all(&run, &["not pulled", "running it here"]);
    assert!(!teammate.path().parent().unwrap().join("escaped.txt").exists());
    assert!(!Path::new("/escaped.txt").exists());
    assert_eq!(teammate.read("results/gen/data.txt"), "hello\n");
}

// ---- Processes ----

/// A pipeline whose command leaves a uniquely named `sleep` running in the background.
fn sleeper(tag: u32) -> String {
    format!("[pipeline]\nname = \"t\"\n[stages.slow]\nkind = \"command\"\nparams = {{ cmd = \"sleep {tag} & sleep {} ; echo x > $WORMFLOW_OUT/a\" }}\n", tag + 1)
}

#[test]
fn a_signal_to_wormflow_alone_stops_the_whole_command_and_exits_128_plus_it() {
    for (signal, code, tag) in [(libc::SIGINT, 130, 9871), (libc::SIGTERM, 143, 9873)] {
        let ws = Workspace::new(&sleeper(tag));
        let mut child =
            ws.cmd(&["run"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for("the command's children", Duration::from_secs(20), || {
            running(&format!("^sleep {}$", tag + 1)).len() == 1
        });
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(code), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
        contains_all(&err, &["interrupted", "slow: cancelled"]);
        assert!(running(&format!("^sleep {tag}$")).is_empty(), "no sleep left behind");
        assert_eq!(std::fs::read_dir(ws.file("cache/tmp")).unwrap().count(), 0, "no work dir left");
        assert_eq!(ws.action_count(), 0);
    }
}

#[test]
fn the_torch_helper_dies_with_its_parent() {
    let ws = Workspace::new(
        &common::tiny_science_pipeline("")
            .replace("epochs = 2", "epochs = 100000, early_stopping = 100000"),
    );
    ws.run_events(&["sample"]);
    for kill_9 in [false, true] {
        let mut child = ws
            .cmd(&["run", "--json", "-j", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut helpers = Vec::new();
        wait_for("the helper", Duration::from_secs(60), || {
            helpers = common::helpers_of(pid);
            !helpers.is_empty()
        });
        unsafe { libc::kill(pid, if kill_9 { libc::SIGKILL } else { libc::SIGTERM }) };
        let status = child.wait().unwrap();
        if !kill_9 {
            assert_eq!(status.code(), Some(143));
        }
        wait_for("the helper to exit", Duration::from_secs(10), || {
            helpers.iter().all(|&h| !common::alive(h))
        });
    }
    verify_clean(&ws);
}

#[test]
fn command_timeouts_and_background_processes_holding_its_output() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.bg]\nkind = \"command\"\nparams = { cmd = \"sleep 9875 & echo x > $WORMFLOW_OUT/a\" }\n[stages.late]\nkind = \"command\"\nparams = { cmd = \"sleep 9876\", timeout_s = 1 }\n");
    let start = Instant::now();
    let out = exits(&ws, &["run", "-k"], 1);
    assert!(start.elapsed() < Duration::from_secs(15), "nothing waits on the background sleep");
    contains_all(
        &out,
        &["late: command `sleep 9876` ran past params.timeout_s = 1; its processes were stopped"],
    );
    assert_eq!(ws.read("results/bg/a"), "x\n");
    assert!(running("^sleep 987[56]$").is_empty());
    let err = exits(&Workspace::new("[pipeline]\nname = \"t\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"true\", timeout_s = \"soon\" }\n"), &["run"], 2);
    contains_all(&err, &["params.timeout_s must be a number of seconds"]);
}

// ---- Messages ----

#[test]
fn shell_variables_are_written_with_a_double_dollar() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"f=data.h5; echo $${f%.h5} $${HOME:+home} > $WORMFLOW_OUT/a\" }\n");
    ws.run_events(&[]);
    assert_eq!(ws.read("results/a/a"), "data home\n");
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"echo ${HOME}\" }\n");
    contains_all(
        &ws.bad(&["run"]),
        &["unknown placeholder ${HOME}", "write $${HOME} for a literal ${HOME}"],
    );
}

#[test]
fn errors_from_set_values_name_the_set_argument() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n\n[stages.a]\nkind = \"command\"\nparams = { cmd = \"true\" }\n\n");
    let err = ws.bad(&["--set", "stages.zzz.kind=comand", "status"]);
    contains_all(
        &err,
        &[
            "--set \"stages.zzz.kind=comand\": stages.zzz: unknown kind \"comand\"",
            "did you mean \"command\"",
        ],
    );
    assert!(!err.contains(":9:"), "{err}");
    let err = ws.bad(&["--set", "pipeline.seed=-1", "status"]);
    contains_all(&err, &["--set \"pipeline.seed=-1\""]);
}

#[test]
fn stages_sharing_an_input_variable_are_refused() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.a-b]\nkind = \"command\"\nparams = { cmd = \"true\" }\n[stages.a_b]\nkind = \"command\"\nparams = { cmd = \"true\" }\n");
    contains_all(
        &ws.bad(&["status"]),
        &["stages \"a-b\" and \"a_b\" would both pass their output as $WORMFLOW_INPUT_A_B"],
    );
}

#[test]
fn a_store_under_home_is_expanded() {
    let home = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&GEN.replace("name = \"t\"", "name = \"t\"\nstore = \"~/wf-cache\""));
    let out = ws.cmd(&["run"]).env("HOME", home.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(home.path().join("wf-cache/wormflow-store.toml").exists());
    assert!(!ws.file("~").exists());
    let ws = Workspace::new(&GEN.replace("name = \"t\"", "name = \"t\"\nstore = \"~bob/cache\""));
    contains_all(&ws.bad(&["run"]), &["another user's home (~user)"]);
}

#[test]
fn verify_finds_a_record_under_another_key_and_directories_in_objects() {
    let ws = Workspace::new(&format!(
        "{GEN}[stages.b]\nkind = \"command\"\nparams = {{ cmd = \"echo b > $WORMFLOW_OUT/b\" }}\n"
    ));
    ws.run_events(&[]);
    let records = walk_files(&ws.file("cache/actions"));
    std::fs::copy(&records[0], &records[1]).unwrap();
    let out = exits(&ws, &["verify"], 1);
    contains_all(&out, &["broken record:", "not a valid record: the record of key"]);
    ws.ok(&["verify", "--repair"]);
    assert_eq!(ws.run_events(&[]).ran().len(), 1, "the record's node is recomputed");
    verify_clean(&ws);

    // A directory where an object belongs: verify names it, run recomputes the node.
    let object = ws.object_of("results/b/b");
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(&object).unwrap();
    std::fs::create_dir_all(object.join("junk")).unwrap();
    let out = exits(&ws, &["verify"], 1);
    contains_all(&out, &[&format!("corrupt object: {} (a directory", object.display())]);
    assert_eq!(ws.run_events(&[]).ran(), ["b"]);
    verify_clean(&ws);
    // One inside objects/ that names no object: verify reports it, repair and gc remove it.
    std::fs::create_dir_all(ws.file("cache/objects/zz/notahash/deeper")).unwrap();
    contains_all(&exits(&ws, &["verify"], 1), &["notahash (not named by a hash)"]);
    ws.ok(&["verify", "--repair"]);
    std::fs::create_dir_all(ws.file("cache/objects/zz/notahash/deeper")).unwrap();
    ws.ok(&["gc"]);
    assert!(!ws.file("cache/objects/zz/notahash").exists());
    verify_clean(&ws);
    assert_eq!(ws.read("results/gen/data.txt"), "hello\n");
    assert_eq!(ws.read("results/b/b"), "b\n");
}

#[test]
fn odd_outputs_are_explained() {
    let ws = Workspace::new("[pipeline]\nname = \"t\"\n[stages.latin]\nkind = \"command\"\nparams = { cmd = \"printf x > \\\"$WORMFLOW_OUT/$(printf 'caf\\\\351')\\\"\" }\n[stages.gone]\nkind = \"command\"\nparams = { cmd = \"rm -rf $WORMFLOW_OUT\" }\n");
    let out = exits(&ws, &["run", "-k"], 1);
    contains_all(
        &out,
        &[
            "latin: output \"caf",
            "is not UTF-8",
            "gone: its output directory ($WORMFLOW_OUT) was removed while it ran",
        ],
    );
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn training_params_are_checked_by_name_at_plan_time() {
    let train = |params: &str| {
        Workspace::new(&format!("[pipeline]\nname = \"t\"\n[stages.train]\nkind = \"train\"\nparams = {{ model = \"lstm\", {params} }}\n"))
    };
    for (params, expect) in [
        (
            "hidden = 8, warmup_steps = -1",
            "params.warmup_steps: invalid value: integer `-1`, expected u64",
        ),
        ("hidden = 8, epochs = 0", "params.epochs = 0 would store an untrained model"),
        ("hidden = 8, threads = -3", "params.threads must be ≥ 0"),
        (
            "hidden = 100000, device = \"cpu\"",
            "params.hidden = 100000 makes a lstm of 8.006e10 parameters",
        ),
    ] {
        let err = train(params).bad(&["status"]);
        contains_all(&err, &["train: ", expect]);
        assert!(err.len() < 600, "one short message: {err}");
    }
}

#[test]
fn archives_are_unpacked_within_limits() {
    type Fill = Box<dyn Fn(&mut tar::Builder<flate2::write::GzEncoder<std::fs::File>>)>;
    let cases: [(&str, Fill, &str); 3] = [
        (
            "bomb",
            Box::new(|b| add_file(b, "zeros.bin", &vec![0u8; 20 << 20])),
            "unpacks to more than",
        ),
        (
            "fifo",
            Box::new(|b| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_data(&mut h, "pipe", std::io::empty()).unwrap();
            }),
            "archive entry \"pipe\" is a Fifo",
        ),
        (
            "dups",
            Box::new(|b| {
                add_file(b, "a.txt", b"one");
                add_file(b, "a.txt", b"two");
            }),
            "a.txt is already in the output (listed twice in the archive",
        ),
    ];
    for (name, fill, expect) in cases {
        let ws = Workspace::new(&format!("[pipeline]\nname = \"t\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{{ url = \"{name}.tar.gz\", extract = true }}] }}\n"));
        let file = std::fs::File::create(ws.file(&format!("{name}.tar.gz"))).unwrap();
        let mut b =
            tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::best()));
        fill(&mut b);
        b.into_inner().unwrap().finish().unwrap();
        let out = exits(&ws, &["run"], 1);
        contains_all(&out, &[&format!("{name}.tar.gz: "), expect]);
        assert_eq!(ws.action_count(), 0, "{name}");
    }
}

fn add_file<W: std::io::Write>(b: &mut tar::Builder<W>, path: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, path, bytes).unwrap();
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}
