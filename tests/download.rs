//! The `download` kind against a real HTTP server on loopback, started by each test: a
//! good file, a 404, a connection cut mid-body (resumed with Range), a wrong checksum
//! (nothing stored), a slow server (progress events), archives and zip-slip.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Events, Workspace};

/// A file the server can send; `cut` closes the first full response half-way; `redirect`
/// answers 302 with that Location instead.
#[derive(Clone)]
struct Route {
    path: String,
    body: Vec<u8>,
    cut_first: bool,
    slow: bool,
    redirect: Option<String>,
}

struct Server {
    port: u16,
    /// "GET /path range=…" per request, in order.
    log: Arc<Mutex<Vec<String>>>,
}

fn body(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + salt as usize) % 251) as u8).collect()
}

impl Server {
    fn start(routes: Vec<Route>) -> Server {
        Server::start_with(|_| routes)
    }

    /// Routes that need the server's own address (`http://127.0.0.1:PORT`), e.g. in JSON.
    fn start_with(routes: impl FnOnce(&str) -> Vec<Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = routes(&format!("http://127.0.0.1:{port}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            let cut_done = Arc::new(Mutex::new(false));
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (routes, log, cut_done) = (routes.clone(), log2.clone(), cut_done.clone());
                std::thread::spawn(move || serve(stream, &routes, &log, &cut_done));
            }
        });
        Server { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &[Route],
    log: &Mutex<Vec<String>>,
    cut_done: &Mutex<bool>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_from: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    log.lock().unwrap().push(format!("GET {path} range={range_from:?}"));
    let Some(route) = routes.iter().find(|r| r.path == path) else {
        let _ = stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        );
        return;
    };
    if let Some(location) = &route.redirect {
        let _ = stream.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        return;
    }
    let from = range_from.unwrap_or(0).min(route.body.len());
    let part = &route.body[from..];
    let head = if range_from.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
            part.len(),
            route.body.len() - 1,
            route.body.len()
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n", part.len())
    };
    let _ = stream.write_all(head.as_bytes());
    let cut_now = route.cut_first
        && range_from.is_none()
        && !std::mem::replace(&mut *cut_done.lock().unwrap(), true);
    if cut_now {
        let _ = stream.write_all(&part[..part.len() / 2]);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    if route.slow {
        for chunk in part.chunks(part.len().div_ceil(10)) {
            let _ = stream.write_all(chunk);
            let _ = stream.flush();
            std::thread::sleep(Duration::from_millis(150));
        }
    } else {
        let _ = stream.write_all(part);
    }
    let mut sink = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.read_to_end(&mut sink);
}

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn pipeline(files: &str) -> String {
    format!("[pipeline]\nname = \"dl\"\n[stages.get]\nkind = \"download\"\nparams = {{ retries = 3, timeout_s = 5, files = [{files}] }}\n")
}

fn route(path: &str, body: Vec<u8>) -> Route {
    Route { path: path.to_string(), body, cut_first: false, slow: false, redirect: None }
}

fn redirect(path: &str, to: &str) -> Route {
    Route { redirect: Some(to.to_string()), ..route(path, Vec::new()) }
}

#[test]
fn a_good_file_is_fetched_and_pinned() {
    let data = body(300_000, 1);
    let server = Server::start(vec![route("/good.bin", data.clone())]);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{}\" }}",
        server.url("/good.bin"),
        b3(&data)
    )));
    let ev = ws.run_events(&[]);
    assert_eq!(ev.ran(), ["get"]);
    assert_eq!(std::fs::read(ws.file("results/get/good.bin")).unwrap(), data);
    // Cached: the second run does not touch the network.
    let before = server.requests().len();
    assert!(ws.run_events(&[]).ran().is_empty());
    assert_eq!(server.requests().len(), before);
    // sha256 is accepted too.
    let sha = sha256(&data);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", sha256 = \"{sha}\", path = \"x/y.bin\" }}",
        server.url("/good.bin")
    )));
    ws.run_events(&[]);
    assert_eq!(std::fs::read(ws.file("results/get/x/y.bin")).unwrap(), data);
}

#[test]
fn a_404_is_reported_and_nothing_stored() {
    let server = Server::start(vec![]);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{}\" }}",
        server.url("/missing.h5"),
        b3(b"x")
    )));
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&common::text(&out.stdout));
    let err = ev.0.iter().find(|e| e["event"] == "failed").unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("HTTP 404") && err.contains("/missing.h5"), "{err}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    assert_eq!(ws.action_count(), 0);
}

#[test]
fn a_cut_connection_is_resumed_with_range() {
    let data = body(400_000, 2);
    let server = Server::start(vec![Route { cut_first: true, ..route("/cut.bin", data.clone()) }]);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{}\" }}",
        server.url("/cut.bin"),
        b3(&data)
    )));
    ws.run_events(&[]);
    assert_eq!(std::fs::read(ws.file("results/get/cut.bin")).unwrap(), data);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0], "GET /cut.bin range=None");
    assert_eq!(
        reqs[1],
        format!("GET /cut.bin range=Some({})", data.len() / 2),
        "the retry asks for the rest"
    );
}

#[test]
fn a_wrong_checksum_stores_nothing() {
    let data = body(10_000, 3);
    let server = Server::start(vec![route("/wrong.bin", data.clone())]);
    let pin = b3(b"something else");
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{pin}\" }}",
        server.url("/wrong.bin")
    )));
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = common::text(&out.stdout);
    assert!(stdout.contains(&format!("expected blake3 {pin}, got {}", b3(&data))), "{stdout}");
    assert_eq!(ws.action_count(), 0);
    assert_eq!(ws.object_count(), 0);
}

#[test]
fn a_slow_server_reports_progress() {
    let data = body(200_000, 4);
    let server = Server::start(vec![Route { slow: true, ..route("/slow.bin", data.clone()) }]);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{}\" }}",
        server.url("/slow.bin"),
        b3(&data)
    )));
    let ev = ws.run_events(&[]);
    let fractions: Vec<f64> =
        ev.0.iter()
            .filter(|e| e["event"] == "progress")
            .map(|e| e["fraction"].as_f64().unwrap())
            .collect();
    assert!(fractions.len() >= 3, "progress events: {fractions:?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    let last = ev.0.iter().rfind(|e| e["event"] == "progress").unwrap();
    assert!(last["message"].as_str().unwrap().contains("MB"), "{last}");
}

#[test]
fn mirrors_are_used_first_and_checked() {
    let data = body(5_000, 5);
    let server = Server::start(vec![route("/f.bin", data.clone())]);
    let ws = Workspace::new(
        &pipeline(&format!("{{ url = \"{}\", blake3 = \"{}\" }}", server.url("/f.bin"), b3(&data)))
            .replace("retries = 3", "retries = 3, mirrors = [\"mirror\"]"),
    );
    std::fs::create_dir_all(ws.file("mirror")).unwrap();
    std::fs::write(ws.file("mirror/f.bin"), &data).unwrap();
    ws.run_events(&[]);
    assert!(server.requests().is_empty(), "the mirror served it");
    // A damaged mirror copy is skipped in favour of the URL.
    let ws2 = Workspace::new(&ws.read("pipeline.toml"));
    std::fs::create_dir_all(ws2.file("mirror")).unwrap();
    std::fs::write(ws2.file("mirror/f.bin"), b"damaged").unwrap();
    ws2.run_events(&[]);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(std::fs::read(ws2.file("results/get/f.bin")).unwrap(), data);
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Write the name bytes directly so that unsafe names reach the archive.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    out
}

fn zip_file(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut cursor);
        for (name, data) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    cursor.into_inner()
}

#[test]
fn archives_are_extracted_and_zip_slip_refused() {
    let good_tgz = tar_gz(&[("worms/a.h5", b"aaa"), ("worms/b.h5", b"bbb")]);
    let good_zip = zip_file(&[("z/c.json", b"{}")]);
    let evil_tgz = tar_gz(&[("../escape.txt", b"x")]);
    let evil_zip = zip_file(&[("../../escape.txt", b"x")]);
    let server = Server::start(vec![
        route("/good.tar.gz", good_tgz.clone()),
        route("/good.zip", good_zip.clone()),
        route("/evil.tar.gz", evil_tgz.clone()),
        route("/evil.zip", evil_zip.clone()),
    ]);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", blake3 = \"{}\", extract = true }}, {{ url = \"{}\", blake3 = \"{}\", extract = true }}",
        server.url("/good.tar.gz"),
        b3(&good_tgz),
        server.url("/good.zip"),
        b3(&good_zip)
    )));
    ws.run_events(&[]);
    assert_eq!(ws.read("results/get/good/worms/b.h5"), "bbb");
    assert_eq!(ws.read("results/get/good/z/c.json"), "{}");
    for (path, bytes) in [("/evil.tar.gz", &evil_tgz), ("/evil.zip", &evil_zip)] {
        let ws = Workspace::new(&pipeline(&format!(
            "{{ url = \"{}\", blake3 = \"{}\", extract = true }}",
            server.url(path),
            b3(bytes)
        )));
        let out = ws.wf(&["run", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let stdout = common::text(&out.stdout);
        assert!(stdout.contains("refusing archive entry"), "{path}: {stdout}");
        assert_eq!(ws.action_count(), 0);
        assert!(!ws.path().parent().unwrap().join("escape.txt").exists());
    }
}

#[test]
fn unpinned_urls_are_rejected_at_plan_time() {
    let ws = Workspace::new(&pipeline("{ url = \"https://example.org/x.h5\" }"));
    let err = ws.bad(&["run"]);
    assert!(err.contains("remote files must be pinned"), "{err}");
}

#[test]
fn allow_unpinned_fetches_once_and_writes_the_pins() {
    let data = body(50_000, 7);
    let server = Server::start(vec![route("/first.bin", data.clone())]);
    let text = pipeline(&format!("{{ url = \"{}\" }}", server.url("/first.bin")))
        .replace("retries = 3", "allow_unpinned = true, retries = 3");
    let ws = Workspace::new(&text);
    assert_eq!(ws.run_events(&[]).ran(), ["get"]);
    assert_eq!(std::fs::read(ws.file("results/get/first.bin")).unwrap(), data);
    let pins = ws.read("results/get/pins.toml");
    assert!(pins.contains(&format!("blake3 = \"{}\"", b3(&data))), "{pins}");
    assert!(pins.contains(&server.url("/first.bin")), "{pins}");
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What the DANDI API answers (api.dandiarchive.org/api, as documented at
/// /swagger): asset listings filtered by `path` prefix and paginated by `next`, each asset's
/// metadata with its `digest`, and `/assets/{id}/download/` redirecting to the blob store.
/// `assets` are (asset_id, path, bytes, published sha256).
fn dandi_routes(base: &str, assets: &[(&str, &str, Vec<u8>, String)]) -> Vec<Route> {
    let version = "/api/dandisets/000776/versions/0.241009.1509";
    let listed = |a: &(&str, &str, Vec<u8>, String)| {
        serde_json::json!({"asset_id": a.0, "blob": format!("blob-{}", a.0), "zarr": null, "path": a.1,
            "size": a.2.len(), "created": "2024-10-09T15:09:00Z", "modified": "2024-10-09T15:09:00Z"})
    };
    let mut routes = Vec::new();
    for a in assets {
        let one =
            serde_json::json!({"count": 1, "next": null, "previous": null, "results": [listed(a)]});
        let query: String = a.1.replace('/', "%2F");
        routes.push(route(
            &format!("{version}/assets/?path={query}&page_size=1000"),
            one.to_string().into_bytes(),
        ));
        let meta = serde_json::json!({"id": format!("dandiasset:{}", a.0), "schemaKey": "Asset", "path": a.1,
            "contentSize": a.2.len(), "encodingFormat": "application/x-nwb",
            "digest": {"dandi:dandi-etag": "0123abcd-1", "dandi:sha2-256": a.3},
            "contentUrl": [format!("{base}/api/assets/{}/download/", a.0), format!("{base}/blobs/{}", a.0)]});
        routes.push(route(&format!("{version}/assets/{}/", a.0), meta.to_string().into_bytes()));
        routes.push(redirect(
            &format!("/api/assets/{}/download/", a.0),
            &format!("{base}/blobs/{}", a.0),
        ));
        routes.push(route(&format!("/blobs/{}", a.0), a.2.clone()));
    }
    // The whole dandiset (`path=` empty), two pages.
    let page2 = format!("{base}{version}/assets/?page=2&path=&page_size=1000");
    let first = serde_json::json!({"count": assets.len(), "next": page2, "previous": null, "results": [listed(&assets[0])]});
    let rest: Vec<_> = assets[1..].iter().map(listed).collect();
    let second =
        serde_json::json!({"count": assets.len(), "next": null, "previous": "…", "results": rest});
    routes.push(route(
        &format!("{version}/assets/?path=&page_size=1000"),
        first.to_string().into_bytes(),
    ));
    routes.push(route(
        &format!("{version}/assets/?page=2&path=&page_size=1000"),
        second.to_string().into_bytes(),
    ));
    routes
}

fn dandi_pipeline(api: &str, files: &str) -> String {
    pipeline(files).replace("retries = 3", &format!("dandi_api = \"{api}\", retries = 3"))
}

#[test]
fn dandi_assets_resolve_through_the_api_and_are_pinned_by_its_sha256() {
    let (a, b) = (body(80_000, 3), body(60_000, 5));
    let assets = [
        ("aaaa-1", "sub-1/sub-1_ophys.nwb", a.clone(), sha256(&a)),
        ("bbbb-2", "sub-2/sub-2_ophys.nwb", b.clone(), sha256(&b)),
    ];
    let server = Server::start_with(|base| dandi_routes(base, &assets));
    let api = server.url("/api");
    // One asset of a published version: no pin needed, the archive's sha256 is checked.
    let ws = Workspace::new(&dandi_pipeline(
        &api,
        "{ url = \"dandi:000776/0.241009.1509/sub-1/sub-1_ophys.nwb\" }",
    ));
    assert_eq!(ws.run_events(&[]).ran(), ["get"]);
    assert_eq!(std::fs::read(ws.file("results/get/sub-1_ophys.nwb")).unwrap(), a);
    let sources: serde_json::Value =
        serde_json::from_str(&ws.read("results/get/.sources.json")).unwrap();
    assert_eq!(sources["sub-1_ophys.nwb"], "dandi:000776/0.241009.1509/sub-1/sub-1_ophys.nwb");
    let log = server.requests();
    assert!(log.iter().any(|r| r.starts_with("GET /api/assets/aaaa-1/download/")), "{log:?}");
    assert!(
        log.iter().any(|r| r.starts_with("GET /blobs/aaaa-1")),
        "the redirect is followed: {log:?}"
    );

    // The whole dandiset: every NWB asset, across pages, keeping the folders.
    let ws = Workspace::new(&dandi_pipeline(
        &api,
        "{ url = \"dandi:000776/0.241009.1509/\", path = \"raw\" }",
    ));
    ws.run_events(&[]);
    assert_eq!(std::fs::read(ws.file("results/get/raw/sub-1/sub-1_ophys.nwb")).unwrap(), a);
    assert_eq!(std::fs::read(ws.file("results/get/raw/sub-2/sub-2_ophys.nwb")).unwrap(), b);

    // A plain asset download URL redirects to S3 too: followed, and the pin still holds.
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", sha256 = \"{}\", path = \"b.nwb\" }}",
        server.url("/api/assets/bbbb-2/download/"),
        sha256(&b)
    )));
    ws.run_events(&[]);
    assert_eq!(std::fs::read(ws.file("results/get/b.nwb")).unwrap(), b);
    let ws = Workspace::new(&pipeline(&format!(
        "{{ url = \"{}\", sha256 = \"{}\" }}",
        server.url("/api/assets/bbbb-2/download/"),
        sha256(&b)
    )));
    assert!(ws.bad(&["run"]).contains("names no file"));

    // A draft can change: refused at plan time without a pin.
    let ws = Workspace::new(&dandi_pipeline(
        &api,
        "{ url = \"dandi:000776/draft/sub-1/sub-1_ophys.nwb\" }",
    ));
    assert!(ws.bad(&["status"]).contains("a DANDI draft can change"));
}

#[test]
fn a_dandi_asset_whose_bytes_differ_from_the_published_sha256_stores_nothing() {
    let a = body(40_000, 9);
    let assets = [("aaaa-1", "sub-1/sub-1_ophys.nwb", a.clone(), sha256(b"something else"))];
    let server = Server::start_with(|base| {
        let mut routes = dandi_routes(base, &assets);
        // The API answers a path that matches nothing with an empty page.
        let none = serde_json::json!({"count": 0, "next": null, "previous": null, "results": []});
        routes.push(route(
            "/api/dandisets/000776/versions/0.241009.1509/assets/?path=sub-9%2Fnone.nwb&page_size=1000",
            none.to_string().into_bytes(),
        ));
        routes
    });
    let ws = Workspace::new(&dandi_pipeline(
        &server.url("/api"),
        "{ url = \"dandi:000776/0.241009.1509/sub-1/sub-1_ophys.nwb\" }",
    ));
    let err = ws.run_fails();
    assert!(
        err.contains("checksum mismatch")
            && err.contains("dandi:000776/0.241009.1509/sub-1/sub-1_ophys.nwb"),
        "{err}"
    );
    assert!(!ws.file("results/get").exists());
    let ws = Workspace::new(&dandi_pipeline(
        &server.url("/api"),
        "{ url = \"dandi:000776/0.241009.1509/sub-9/none.nwb\" }",
    ));
    assert!(ws.run_fails().contains("lists no such asset"));
}

/// A DANDI listing (from whatever answers at `dandi_api`) whose asset path climbs out of
/// the output (`..`), or is absolute: the node fails naming the asset and the dandiset,
/// and nothing is written anywhere — not beside the workspace, not at the absolute path.
#[test]
fn dandi_asset_paths_that_leave_the_output_are_refused() {
    let name = format!("wormflow-escape-{}.nwb", std::process::id());
    let a = body(5_000, 7);
    for evil in [format!("sub-1/../../../../../../../../{name}"), format!("/tmp/{name}")] {
        let assets = [("aaaa-1", evil.as_str(), a.clone(), sha256(&a))];
        let server = Server::start_with(|base| {
            let mut routes = dandi_routes(base, &assets);
            // The folder listing (`path=sub-1/`) answers with the hostile asset too.
            let listed = serde_json::json!({"count": 1, "next": null, "previous": null, "results": [
                {"asset_id": "aaaa-1", "path": evil, "size": a.len()}]});
            routes.push(route(
                "/api/dandisets/000776/versions/0.241009.1509/assets/?path=sub-1%2F&page_size=1000",
                listed.to_string().into_bytes(),
            ));
            routes
        });
        let ws = Workspace::new(&dandi_pipeline(
            &server.url("/api"),
            "{ url = \"dandi:000776/0.241009.1509/sub-1/\" }",
        ));
        let err = ws.run_fails();
        assert!(
            err.contains("dandiset 000776 version 0.241009.1509")
                && err.contains(&format!("{evil:?}"))
                && err.contains("outside the output"),
            "{err}"
        );
        assert_eq!(ws.action_count(), 0);
        assert!(!ws.file("results/get").exists());
        assert!(
            !server.requests().iter().any(|r| r.contains("/download/") || r.contains("/blobs/")),
            "nothing was fetched: {:?}",
            server.requests()
        );
        // Wherever `..` could have led: the workspace's ancestors, and the absolute path.
        for dir in ws.path().ancestors() {
            assert!(!dir.join(&name).exists(), "{} was written", dir.join(&name).display());
        }
        assert!(!std::path::Path::new("/tmp").join(&name).exists());
        assert!(common::files_under(ws.path()).iter().all(|f| !f.ends_with(&name)));
    }
}

/// A listing whose `next` names a page already fetched would be followed for ever: it is
/// an error as soon as `next` repeats a page, which is not fetched again.
#[test]
fn a_dandi_listing_that_loops_ends_with_an_error() {
    let a = body(5_000, 8);
    let assets = [("aaaa-1", "sub-1/sub-1_ophys.nwb", a.clone(), sha256(&a))];
    let server = Server::start_with(|base| {
        let mut routes = dandi_routes(base, &assets);
        let me =
            "/api/dandisets/000776/versions/0.241009.1509/assets/?path=sub-1%2F&page_size=1000";
        let looping = serde_json::json!({"count": 2, "next": format!("{base}{me}"), "previous": null,
            "results": [{"asset_id": "aaaa-1", "path": "sub-1/sub-1_ophys.nwb", "size": a.len()}]});
        routes.push(route(me, looping.to_string().into_bytes()));
        routes
    });
    let ws = Workspace::new(&dandi_pipeline(
        &server.url("/api"),
        "{ url = \"dandi:000776/0.241009.1509/sub-1/\" }",
    ));
    let started = std::time::Instant::now();
    let err = ws.run_fails();
    assert!(
        err.contains("listing loops") && err.contains("dandi:000776/0.241009.1509/sub-1/"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let listings = server.requests().iter().filter(|r| r.contains("/assets/?")).count();
    assert_eq!(
        listings,
        1,
        "its `next` is a page already read: not fetched again: {:?}",
        server.requests()
    );
    assert_eq!(ws.action_count(), 0);
}
