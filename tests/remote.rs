//! Remotes: two teammates (two workspaces, two local stores) sharing results through a
//! directory and through a real S3-compatible server (s3s-fs) on loopback.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{text, tiny_science_pipeline, tree_bytes, S3Server, Workspace, S3_KEY, S3_SECRET};

fn dir_remote(dir: &Path) -> String {
    format!("[remotes.lab]\nurl = \"{}\"\n", dir.display())
}

/// Run with the test server's credentials.
fn s3(ws: &Workspace, args: &[&str]) -> std::process::Output {
    ws.cmd(args)
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// Files under a remote directory (objects and records).
fn remote_files(dir: &Path, sub: &str) -> Vec<std::path::PathBuf> {
    fn walk(d: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().filter_map(Result::ok) {
            if e.path().is_dir() {
                walk(&e.path(), out)
            } else {
                out.push(e.path())
            }
        }
    }
    let mut v = Vec::new();
    walk(&dir.join(sub), &mut v);
    v
}

/// Every record on the remote has all its objects, and every object's bytes hash to its name.
fn assert_remote_consistent(team: &Path) {
    for obj in remote_files(team, "objects") {
        let name = format!(
            "{}{}",
            obj.parent().unwrap().file_name().unwrap().to_string_lossy(),
            obj.file_name().unwrap().to_string_lossy()
        );
        if name.len() != 64 {
            continue; // not an object name (a server's own bookkeeping)
        }
        assert_eq!(
            blake3::hash(&std::fs::read(&obj).unwrap()).to_hex().to_string(),
            name,
            "{} is not what its name says",
            obj.display()
        );
    }
    for rec in remote_files(team, "actions") {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        for o in v["outputs"].as_array().unwrap() {
            let h = o["hash"].as_str().unwrap();
            assert!(
                team.join("objects").join(&h[..2]).join(&h[2..]).is_file(),
                "{} names object {h}, which is missing",
                rec.display()
            );
        }
    }
}

#[test]
fn teammates_share_results_through_a_directory() {
    let remote = tempfile::tempdir().unwrap();
    let pipeline = tiny_science_pipeline(&dir_remote(remote.path()));
    let a = Workspace::new(&pipeline);
    assert_eq!(a.run_events(&[]).ran().len(), 6);
    let first = a.ok(&["push"]);
    let said = text(&a.wf(&["push"]).stderr);
    assert!(
        said.contains("pushed 0 objects") && said.contains("already there"),
        "second push must be a no-op: {said}{first}"
    );
    assert_remote_consistent(remote.path());

    // B: own store, pulls, runs nothing, has the same bytes.
    let b = Workspace::new(&pipeline);
    b.ok(&["pull"]);
    let ev = b.run_events(&[]);
    assert!(ev.ran().is_empty(), "B ran {:?}", ev.ran());
    assert_eq!(ev.cached().len(), 6);
    assert_eq!(tree_bytes(&a.file("results")), tree_bytes(&b.file("results")));

    // C: `run --pull` fetches every node instead of running it.
    let c = Workspace::new(&pipeline);
    let ev = c.run_events(&["--pull"]);
    assert!(ev.ran().is_empty());
    assert_eq!(ev.nodes("pulled").len(), 6);
    assert_eq!(tree_bytes(&a.file("results")), tree_bytes(&c.file("results")));
}

#[test]
fn a_damaged_remote_object_is_refused() {
    let remote = tempfile::tempdir().unwrap();
    let pipeline = tiny_science_pipeline(&dir_remote(remote.path()));
    let a = Workspace::new(&pipeline);
    a.run_events(&[]);
    a.ok(&["push"]);
    // Flip a byte of the largest object on the remote (the model's weights).
    let victim = remote_files(remote.path(), "objects")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&victim, &bytes).unwrap();

    let b = Workspace::new(&pipeline);
    let err = b.bad(&["pull"]);
    assert!(err.contains("the remote copy is damaged; refused"), "{err}");
    let bad_name = format!(
        "{}{}",
        victim.parent().unwrap().file_name().unwrap().to_string_lossy(),
        victim.file_name().unwrap().to_string_lossy()
    );
    assert!(
        !b.file("cache/objects").join(&bad_name[..2]).join(&bad_name[2..]).exists(),
        "the damaged object was imported"
    );
    assert!(
        !b.file("results/evaluate").exists(),
        "a result was recorded downstream of a damaged object"
    );
    // run --pull says so, computes that node itself (same bytes: deterministic) and pulls the rest.
    let out = b.wf(&["run", "--pull", "--json"]);
    let ev = common::Events::parse(&text(&out.stdout));
    assert!(out.status.success());
    assert_eq!(ev.ran().len(), 1, "only the node with the damaged object runs here: {:?}", ev.0);
    assert!(
        ev.0.iter()
            .any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("damaged")),
        "{:?}",
        ev.0
    );
    let good =
        std::fs::read(b.file("cache/objects").join(&bad_name[..2]).join(&bad_name[2..])).unwrap();
    assert_eq!(blake3::hash(&good).to_hex().to_string(), bad_name);
}

#[test]
fn remote_mistakes_are_reported() {
    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::new(&tiny_science_pipeline(&dir_remote(remote.path())));
    let err = ws.bad(&["push", "--remote", "nas"]);
    assert!(err.contains("unknown remote \"nas\" (declared: lab)"), "{err}");
    let bare = Workspace::new(&tiny_science_pipeline(""));
    let err = bare.bad(&["pull"]);
    assert!(err.contains("no remote declared"), "{err}");
    let bad = Workspace::new(&tiny_science_pipeline(
        "[remotes.web]\nurl = \"https://example.org/store\"\n",
    ));
    let err = bad.bad(&["push"]);
    assert!(err.contains("only directories, file:// and s3:// URLs"), "{err}");
    let err = ws.bad(&["run", "--remote", "lab"]);
    assert!(err.contains("add --pull"), "{err}");
    let typo = Workspace::new(&tiny_science_pipeline(
        "[remotes.lab]\nurl = \"/nonexistent/wormflow-remote\"\n",
    ));
    // A remote directory that is not there reads as unreachable (an unmounted share or a
    // typo): exit 3, the environment, with both fixes named.
    let out = typo.wf(&["pull"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/wormflow-remote does not exist"), "{err}");
    assert!(!Path::new("/nonexistent/wormflow-remote").exists());
}

#[test]
fn teammates_share_results_through_s3() {
    let Some(server) = S3Server::start("wormflow") else { return };
    let pipeline = tiny_science_pipeline(&server.remote_toml("s3", "wormflow"));
    let a = Workspace::new(&pipeline);
    a.run_events(&[]);
    ok(s3(&a, &["push"]));
    let again = ok(s3(&a, &["push"]));
    assert!(again.contains("pushed 0 objects"), "{again}");
    assert_remote_consistent(&server.root.path().join("wormflow/team"));
    let b = Workspace::new(&pipeline);
    ok(s3(&b, &["pull"]));
    assert!(b.run_events(&[]).ran().is_empty());
    assert_eq!(tree_bytes(&a.file("results")), tree_bytes(&b.file("results")));

    // Credentials from a shared-credentials profile instead of the environment.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(home.path().join(".aws/credentials"), format!("[default]\naws_access_key_id = x\n[lab]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n")).unwrap();
    let c = Workspace::new(&pipeline);
    let out = c
        .cmd(&["pull"])
        .env("HOME", home.path())
        .env("AWS_PROFILE", "lab")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    ok(out);
    assert!(c.run_events(&[]).ran().is_empty());

    // Two teammates pushing the same results at once: both succeed, the remote is sound.
    let race = ["--set", "remotes.s3.url=\"s3://wormflow/race\""];
    let spawn = |ws: &Workspace| {
        ws.cmd(&[race[0], race[1], "push"])
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .spawn()
            .unwrap()
    };
    let (mut p1, mut p2) = (spawn(&a), spawn(&b));
    assert!(p1.wait().unwrap().success() && p2.wait().unwrap().success());
    let raced = server.root.path().join("wormflow/race");
    assert_remote_consistent(&raced);
    assert_eq!(remote_files(&raced, "actions").len(), 6);

    // Wrong credentials and an endpoint nobody listens on: clear errors, nothing changed.
    let before = b.store_snapshot();
    let out = b
        .cmd(&["push"])
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("the credentials were refused"), "{}", text(&out.stderr));
    // Port 1 (tcpmux): nobody listens there. A port freed by a listener of our own could be
    // taken at once by another test's S3 server running in parallel (seen once in CI).
    let dead = 1;
    let out =
        s3(&b, &["push", "--set", &format!("remotes.s3.endpoint=\"http://127.0.0.1:{dead}\"")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("the endpoint cannot be reached"), "{}", text(&out.stderr));
    assert_eq!(before, b.store_snapshot());
}

#[test]
fn an_interrupted_push_leaves_the_remote_consistent() {
    let Some(server) = S3Server::start("wormflow") else { return };
    // Eight 24 MB random outputs: long enough to kill the push midway.
    let pipeline = format!(
        "[pipeline]\nname = \"big\"\n[stages.blob]\nkind = \"command\"\nmatrix = {{ i = [1, 2, 3, 4, 5, 6, 7, 8] }}\nparams = {{ i = \"${{matrix.i}}\", cmd = \"head -c 24000000 /dev/urandom > $WORMFLOW_OUT/blob.bin\" }}\n{}",
        server.remote_toml("s3", "wormflow")
    );
    let a = Workspace::new(&pipeline);
    a.run_events(&[]);
    let team = server.root.path().join("wormflow/team");
    let mut push = a
        .cmd(&["push"])
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while remote_files(&team, "objects").is_empty() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    push.kill().unwrap();
    push.wait().unwrap();
    let records = remote_files(&team, "actions").len();
    assert!(
        records < 8,
        "the push finished before it could be interrupted ({records} records); nothing was tested"
    );
    assert_remote_consistent(&team);
    // The next push completes, and a teammate gets everything.
    ok(s3(&a, &["push"]));
    assert_eq!(remote_files(&team, "actions").len(), 8);
    assert_remote_consistent(&team);
    let b = Workspace::new(&pipeline);
    ok(s3(&b, &["pull"]));
    assert!(b.run_events(&[]).ran().is_empty());
}
