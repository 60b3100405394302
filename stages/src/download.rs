//! Kind `download`: bring files into the store, each pinned by its hash.
//!
//! Sources: `http(s)://` URLs (streamed, resumed with `Range` after a cut connection,
//! retried with exponential backoff, redirects followed), `dandi:` assets of the DANDI
//! archive (see `dandi.rs`; pinned by the sha256 the archive publishes), `file://` URLs and
//! plain paths relative to the workspace — a file, a directory (every file under it) or a
//! glob (`mydata/*.h5`), each file entering the key by its contents (`wormflow_api::local`).
//! Every file's origin is listed in `.sources.json` (output path → URL or local path), so
//! later stages can name the user's file rather than the store's copy.
//! Directories in `mirrors` are checked first for a file of the same name;
//! a mirror copy is used only if its hash matches the pin. Every URL must be pinned by
//! `blake3` (or `sha256`); a mismatch is an error naming the expected and actual hash, and
//! nothing is stored. The one escape hatch, for a pipeline whose files nobody has fetched
//! yet, is `allow_unpinned = true`: such a URL is keyed by its text alone (an upstream
//! change goes unnoticed), and the node writes `pins.toml` with the blake3 it got, to be
//! copied into the pipeline so the next run is pinned. `.tar.gz`/`.tgz` and `.zip` files with `extract = true` are unpacked;
//! entries with absolute paths, `..` or links are refused (zip-slip), as are special files
//! (FIFOs, devices), an entry listed twice, and an archive that unpacks to more than
//! `max_unpacked_bytes` (256 GiB) or `max_unpack_ratio` (200) × its size (a bomb).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use sha2::Digest;
use wormflow_api::StageContext;

use crate::dandi::{self, DandiRef};
use crate::stage::Stage;

pub struct Download;

/// Written into every download's output: output path → where it came from.
pub const SOURCES_FILE: &str = ".sources.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSpec {
    /// https://…, http://…, file://… or a path relative to the workspace.
    pub url: String,
    /// Expected blake3 of the bytes (hex).
    pub blake3: String,
    /// Expected sha256 (hex), accepted instead of blake3.
    pub sha256: String,
    /// Where to put it in the output (default: the URL's file name).
    pub path: String,
    /// Unpack a .tar.gz/.tgz/.zip into the output (under `path` without its extension).
    pub extract: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub files: Vec<FileSpec>,
    /// Directories (relative to the workspace) searched first, by file name.
    pub mirrors: Vec<String>,
    /// Attempts per URL after the first.
    pub retries: u32,
    /// Seconds to wait for a connection or for the next bytes.
    pub timeout_s: u64,
    /// Accept remote files without a pin (trust on first use; see the module docs).
    pub allow_unpinned: bool,
    /// Most bytes one archive may unpack to (a guard against archive bombs).
    pub max_unpacked_bytes: u64,
    /// Most unpacked bytes per byte of archive (real data compresses far less).
    pub max_unpack_ratio: u64,
    /// The DANDI archive's REST API, for `dandi:` sources.
    pub dandi_api: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            files: Vec::new(),
            mirrors: Vec::new(),
            retries: 4,
            timeout_s: 60,
            allow_unpinned: false,
            max_unpacked_bytes: 256 << 30,
            max_unpack_ratio: 200,
            dandi_api: "https://api.dandiarchive.org/api".into(),
        }
    }
}

fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://") || url.starts_with("dandi:")
}

fn local_path(url: &str) -> &str {
    url.strip_prefix("file://").unwrap_or(url)
}

fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

impl FileSpec {
    fn dest(&self) -> String {
        if !self.path.is_empty() {
            return self.path.clone();
        }
        match DandiRef::parse(&self.url) {
            Some(Ok(r)) if r.is_folder() => String::new(),
            Some(Ok(r)) => r.dest_of(&r.path),
            _ => file_name(&self.url).to_string(),
        }
    }

    /// Sources that may bring many files (a DANDI folder; local directories and globs are
    /// only known with the workspace) land under `path`, or the output's root.
    fn is_folder_source(&self) -> bool {
        matches!(DandiRef::parse(&self.url), Some(Ok(r)) if r.is_folder())
            || (!is_remote(&self.url)
                && (local_path(&self.url).contains(['*', '?', '[', '{'])
                    || self.url.ends_with('/')))
    }
}

/// A hash pin: which algorithm and the expected hex digest.
struct Pin<'a> {
    algo: &'static str,
    hex: &'a str,
}

impl FileSpec {
    fn pin(&self) -> Option<Pin<'_>> {
        if !self.blake3.is_empty() {
            Some(Pin { algo: "blake3", hex: &self.blake3 })
        } else if !self.sha256.is_empty() {
            Some(Pin { algo: "sha256", hex: &self.sha256 })
        } else {
            None
        }
    }
}

fn digest(path: &Path, algo: &str) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut b3 = blake3::Hasher::new();
    let mut s2 = sha2::Sha256::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if algo == "sha256" {
            s2.update(&buf[..n])
        } else {
            b3.update(&buf[..n]);
        }
    }
    Ok(if algo == "sha256" {
        s2.finalize().iter().map(|b| format!("{b:02x}")).collect()
    } else {
        b3.finalize().to_hex().to_string()
    })
}

fn verify(path: &Path, pin: &Pin, what: &str) -> Result<()> {
    let got = digest(path, pin.algo)?;
    if !got.eq_ignore_ascii_case(pin.hex) {
        bail!("{what}: checksum mismatch: expected {} {}, got {got}; the file changed upstream or the pin in pipeline.toml is wrong", pin.algo, pin.hex);
    }
    Ok(())
}

impl Stage for Download {
    const NAME: &'static str = "download";
    const VERSION: &'static str = env!("WORMFLOW_VERSION_DOWNLOAD");
    const CODE: &'static str = env!("WORMFLOW_CODE_DOWNLOAD");
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        if p.files.is_empty() {
            return Err("params.files is empty; list the files to fetch, e.g. files = [{ url = \"https://…\", blake3 = \"…\" }]".into());
        }
        for f in &p.files {
            if f.url.is_empty() {
                return Err("every entry of params.files needs a url".into());
            }
            let dandi = match DandiRef::parse(&f.url) {
                Some(r) => Some(r?),
                None => None,
            };
            // A published DANDI version is immutable and carries each asset's sha256.
            let pinned_by_archive = dandi.as_ref().is_some_and(|r| !r.is_draft());
            if is_remote(&f.url) && f.pin().is_none() && !pinned_by_archive && !p.allow_unpinned {
                let what = if dandi.is_some() {
                    "a DANDI draft can change"
                } else {
                    "remote files must be pinned"
                };
                return Err(format!("{}: {what}: add blake3 = \"…\" (or sha256 = \"…\"){}; for a first fetch of files whose hash nobody has yet, set allow_unpinned = true and copy the hashes from the node's pins.toml", f.url, if dandi.is_some() { ", or name a published version" } else { "" }));
            }
            if f.is_folder_source() && f.pin().is_some() {
                return Err(format!(
                    "{}: names many files, and a pin is the hash of one; pin files one by one",
                    f.url
                ));
            }
            if f.is_folder_source() {
                if !f.path.is_empty() && !safe_relative(Path::new(&f.path)) {
                    return Err(format!(
                        "{}: path {:?} must be a relative path inside the output",
                        f.url, f.path
                    ));
                }
                continue;
            }
            let dest = f.dest();
            if dest.is_empty() && is_remote(&f.url) {
                return Err(format!(
                    "{}: the URL names no file (e.g. a DANDI asset's …/download/ link); add path = \"name.nwb\"",
                    f.url
                ));
            }
            if dest.is_empty() || !safe_relative(Path::new(&dest)) {
                return Err(format!(
                    "{}: path {dest:?} must be a relative path inside the output",
                    f.url
                ));
            }
        }
        // Two files landing on one name: one would silently replace the other. (Archives
        // may share a directory; an entry that is already there is refused when unpacking.)
        let lands = |f: &FileSpec| {
            if f.is_folder_source() {
                format!("{}/", f.path)
            } else if f.extract {
                strip_archive_ext(&f.dest()).to_string()
            } else {
                f.dest()
            }
        };
        for (i, a) in p.files.iter().enumerate() {
            if let Some(b) = p.files[..i].iter().find(|b| {
                lands(b) == lands(a)
                    && !(a.extract && b.extract)
                    && !(a.is_folder_source() || b.is_folder_source())
            }) {
                return Err(format!(
                    "{} and {} would both be written to {:?}; give one of them its own path, e.g. {{ url = \"{}\", path = \"b/{}\" }}",
                    b.url, a.url, lands(a), a.url, file_name(&a.url)
                ));
            }
        }
        Ok(())
    }

    fn file_deps(p: &Params) -> Vec<String> {
        // Unpinned local files enter the key by their contents.
        p.files
            .iter()
            .filter(|f| !is_remote(&f.url) && f.pin().is_none())
            .map(|f| local_path(&f.url).to_string())
            .collect()
    }

    fn run(p: Params, ctx: &StageContext) -> Result<wormflow_api::Provenance> {
        let mut sources = Vec::new();
        let mut origins = std::collections::BTreeMap::new();
        let mut first_pins = String::new();
        for (i, spec) in p.files.iter().enumerate() {
            let progress = |fraction: f64, msg: &str| {
                (ctx.progress)(&wormflow_api::Progress::new(
                    (i as f64 + fraction) / p.files.len() as f64,
                    format!("{} {msg}", spec.url),
                ))
            };
            for (j, item) in expand(spec, &p, ctx)?.into_iter().enumerate() {
                // Every name was checked already (params at plan time, archive listings
                // when resolved); this is the last line before a write.
                if let Err(why) = wormflow_api::relpath::check_relative_path(&item.dest) {
                    bail!(
                        "{}: its place in the output, {:?}, {why}; nothing was written",
                        item.origin,
                        item.dest
                    );
                }
                ctx.check_cancel()?;
                let tmp = ctx.scratch.join(format!("download-{i}-{j}"));
                let from = fetch(&item, &p, ctx, &tmp, &progress)?;
                sources.push(json!({"path": item.dest, "from": from}));
                origins.insert(item.dest.clone(), item.origin.clone());
                if is_remote(&item.url) && item.pins.is_empty() {
                    let got = digest(&tmp, "blake3")?;
                    first_pins
                        .push_str(&format!("{{ url = {:?}, blake3 = \"{got}\" }},\n", item.origin));
                }
                let dest = ctx.out_dir.join(&item.dest);
                if spec.extract {
                    let into = ctx.out_dir.join(strip_archive_ext(&item.dest));
                    extract(&tmp, &item.dest, &into, &Limits::of(&p, &tmp)?)?;
                } else {
                    if dest.exists() {
                        bail!("{}: {} is already in the output (two sources land on one name); give one of them its own path", item.origin, item.dest);
                    }
                    fs::create_dir_all(dest.parent().expect("inside out_dir"))?;
                    fs::rename(&tmp, &dest).or_else(|_| fs::copy(&tmp, &dest).map(|_| ()))?;
                }
            }
        }
        if !first_pins.is_empty() {
            let note = "# Fetched without a pin (allow_unpinned = true). Pin them: copy these entries into\n# params.files (keeping path/extract), then drop allow_unpinned.\n";
            fs::write(ctx.out_dir.join("pins.toml"), format!("{note}{first_pins}"))?;
        }
        fs::write(ctx.out_dir.join(SOURCES_FILE), serde_json::to_vec_pretty(&origins)?)?;
        let mut prov = Map::new();
        prov.insert("sources".into(), json!(sources));
        Ok(prov)
    }
}

/// One file to bring in: where from, where to, and the hashes it must have.
struct Item {
    /// http(s) URL or a path relative to the workspace.
    url: String,
    /// What the user wrote or sees (the `dandi:` reference, the local path).
    origin: String,
    /// Relative path in the output.
    dest: String,
    pins: Vec<(&'static str, String)>,
    /// Mirrors are searched for this name.
    mirror_name: String,
}

fn agent(p: &Params) -> ureq::Agent {
    let timeout = Some(Duration::from_secs(p.timeout_s.max(1)));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(timeout)
        .timeout_recv_response(timeout)
        .timeout_per_read(timeout)
        .build()
        .into()
}

/// The files one entry of `params.files` stands for.
fn expand(spec: &FileSpec, p: &Params, ctx: &StageContext) -> Result<Vec<Item>> {
    let user_pin: Vec<(&'static str, String)> =
        spec.pin().map(|pin| vec![(pin.algo, pin.hex.to_string())]).unwrap_or_default();
    let under = |rel: &str| {
        if spec.path.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", spec.path.trim_end_matches('/'))
        }
    };
    if let Some(r) = DandiRef::parse(&spec.url) {
        let r = r.map_err(anyhow::Error::msg)?;
        let assets = dandi::resolve(&agent(p), &p.dandi_api, &r, ctx.cancel)?;
        return assets
            .into_iter()
            .map(|a| {
                let mut pins = user_pin.clone();
                match &a.sha256 {
                    Some(sha) => pins.push(("sha256", sha.clone())),
                    None if pins.is_empty() && !p.allow_unpinned => bail!(
                        "{}: the archive publishes no sha256 for this asset (yet); pin it with blake3/sha256, or set allow_unpinned = true",
                        r.reference(&a.path)
                    ),
                    None => {}
                }
                let dest = if r.is_folder() { under(&r.dest_of(&a.path)) } else { spec.dest() };
                Ok(Item {
                    origin: r.reference(&a.path),
                    url: a.download_url,
                    mirror_name: a.path.rsplit('/').next().unwrap_or(&a.path).to_string(),
                    dest,
                    pins,
                })
            })
            .collect();
    }
    let local = !is_remote(&spec.url);
    if local && wormflow_api::local::is_multi(ctx.workspace, local_path(&spec.url)) {
        if spec.pin().is_some() {
            bail!("{}: names a directory or several files, and a pin is the hash of one file; drop the pin (local files enter the key by their contents)", spec.url);
        }
        let files = wormflow_api::local::expand(ctx.workspace, local_path(&spec.url))
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.url))?;
        return Ok(files
            .into_iter()
            .map(|f| Item {
                url: f.path.clone(),
                origin: f.path,
                mirror_name: f.rel.rsplit('/').next().unwrap_or(&f.rel).to_string(),
                dest: under(&f.rel),
                pins: Vec::new(),
            })
            .collect());
    }
    Ok(vec![Item {
        url: spec.url.clone(),
        origin: local_path(&spec.url).to_string(),
        dest: spec.dest(),
        pins: user_pin,
        mirror_name: file_name(&spec.url).to_string(),
    }])
}

/// Put the file's bytes at `tmp`, checked against its pins; returns where they came from.
fn fetch(
    item: &Item,
    p: &Params,
    ctx: &StageContext,
    tmp: &Path,
    progress: &dyn Fn(f64, &str),
) -> Result<String> {
    // A mirror copy stands in only if it has every hash the file must have (a DANDI
    // asset may carry the archive's sha256 and the user's pin).
    let has_all_pins = |f: &Path| {
        item.pins.iter().all(|(algo, hex)| verify(f, &Pin { algo, hex }, "mirror").is_ok())
    };
    if !item.pins.is_empty() {
        for mirror in &p.mirrors {
            let candidate = ctx.workspace.join(mirror).join(&item.mirror_name);
            if candidate.is_file() && has_all_pins(&candidate) {
                fs::copy(&candidate, tmp)
                    .with_context(|| format!("cannot copy {}", candidate.display()))?;
                progress(1.0, "from mirror");
                return Ok(format!("mirror {}", candidate.display()));
            }
        }
    }
    if is_remote(&item.url) {
        http_get(&item.url, tmp, p, ctx.cancel, progress)?;
    } else {
        let src = ctx.workspace.join(local_path(&item.url));
        fs::copy(&src, tmp).with_context(|| {
            format!(
                "{}: cannot read {} ; check the path (relative to the workspace)",
                item.url,
                src.display()
            )
        })?;
    }
    for (algo, hex) in &item.pins {
        verify(tmp, &Pin { algo, hex }, &item.origin)?;
    }
    Ok(item.origin.clone())
}

/// Why one HTTP attempt stopped.
enum Attempt {
    Done,
    Retry(String),
}

fn http_get(
    url: &str,
    tmp: &Path,
    p: &Params,
    cancel: &AtomicBool,
    progress: &dyn Fn(f64, &str),
) -> Result<()> {
    let agent = agent(p);
    let _ = fs::remove_file(tmp);
    let mut last = String::new();
    for attempt in 0..=p.retries {
        if attempt > 0 {
            wormflow_api::cancel::sleep(Duration::from_millis(200 << (attempt - 1).min(6)), cancel)
                .with_context(|| format!("{url}: download"))?;
        }
        match try_once(&agent, url, tmp, cancel, progress)? {
            Attempt::Done => return Ok(()),
            Attempt::Retry(why) => last = why,
        }
    }
    bail!("{url}: download failed after {} attempts: {last}", p.retries + 1)
}

fn try_once(
    agent: &ureq::Agent,
    url: &str,
    tmp: &Path,
    cancel: &AtomicBool,
    progress: &dyn Fn(f64, &str),
) -> Result<Attempt> {
    let have = fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Retry(e.to_string())),
    };
    let status = resp.status().as_u16();
    let append = match status {
        206 => true,
        200 => false,
        416 if have > 0 => return Ok(Attempt::Done), // already complete
        404 | 410 | 401 | 403 => bail!("{url}: HTTP {status}; check the URL (or add a mirror)"),
        _ => return Ok(Attempt::Retry(format!("HTTP {status}"))),
    };
    let length: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let start = if append { have } else { 0 };
    let total = length.map(|l| l + start);
    let mut file =
        if append { fs::OpenOptions::new().append(true).open(tmp)? } else { File::create(tmp)? };
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = start;
    loop {
        // A read waits at most timeout_s; between reads the run may be cancelled.
        wormflow_api::cancel::check(cancel)
            .with_context(|| format!("{url}: stopped after {got} bytes"))?;
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all(&buf[..n])?;
                got += n as u64;
                let mb = |b: u64| b as f64 / 1e6;
                match total {
                    Some(t) => {
                        progress(got as f64 / t as f64, &format!("{:.1}/{:.1} MB", mb(got), mb(t)))
                    }
                    None => progress(0.0, &format!("{:.1} MB", mb(got))),
                }
            }
            Err(e) => {
                file.flush()?;
                return Ok(Attempt::Retry(format!("connection lost after {got} bytes: {e}")));
            }
        }
    }
    file.sync_all()?;
    match total {
        Some(t) if got < t => {
            Ok(Attempt::Retry(format!("connection closed after {got} of {t} bytes")))
        }
        _ => Ok(Attempt::Done),
    }
}

fn strip_archive_ext(name: &str) -> &str {
    for ext in [".tar.gz", ".tgz", ".zip"] {
        if let Some(s) = name.strip_suffix(ext) {
            return s;
        }
    }
    name
}

/// A relative path that stays inside its root (no absolute part, no `..`).
fn safe_relative(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// How much an archive may unpack to: the smaller of `max_unpacked_bytes` and
/// `max_unpack_ratio` × its own size.
struct Limits {
    bytes: u64,
}

impl Limits {
    fn of(p: &Params, archive: &Path) -> Result<Limits> {
        let size = fs::metadata(archive)?.len().max(1);
        Ok(Limits { bytes: p.max_unpacked_bytes.min(size.saturating_mul(p.max_unpack_ratio)) })
    }
}

/// Copy one entry's bytes to a new file, counting against the limit.
fn unpack_entry(
    name: &str,
    entry: &mut impl Read,
    dest: &Path,
    written: &mut u64,
    limits: &Limits,
) -> Result<()> {
    let left = limits.bytes.saturating_sub(*written);
    let n = std::io::copy(&mut entry.take(left + 1), &mut File::create(dest)?)?;
    *written += n;
    if *written > limits.bytes {
        bail!(
            "{name}: unpacks to more than {} bytes (params.max_unpacked_bytes, or max_unpack_ratio × the archive's size); nothing was stored. Raise them if the archive is genuine",
            limits.bytes
        );
    }
    Ok(())
}

fn extract(archive: &Path, name: &str, into: &Path, limits: &Limits) -> Result<()> {
    fs::create_dir_all(into)?;
    let refuse = |entry: &str| {
        anyhow!("{name}: refusing archive entry {entry:?}: it would be written outside the output (absolute path, `..` or a link)")
    };
    let not_there_yet = |rel: &Path, dest: &Path| -> Result<()> {
        if dest.exists() {
            bail!("{name}: {} is already in the output (listed twice in the archive, or also in another file of this download); one copy would silently replace the other", rel.display());
        }
        Ok(())
    };
    let mut written = 0u64;
    if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(File::open(archive)?)
            .with_context(|| format!("{name}: not a zip archive"))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            let raw = entry.name().to_string();
            let rel: PathBuf =
                entry.enclosed_name().filter(|p| safe_relative(p)).ok_or_else(|| refuse(&raw))?;
            if entry.is_symlink() {
                return Err(refuse(&raw));
            }
            let dest = into.join(&rel);
            if entry.is_dir() {
                fs::create_dir_all(&dest)?;
            } else if entry.is_file() {
                not_there_yet(&rel, &dest)?;
                fs::create_dir_all(dest.parent().expect("inside"))?;
                unpack_entry(name, &mut entry, &dest, &mut written, limits)?;
            } else {
                bail!("{name}: archive entry {raw:?} is neither a file nor a directory; only those are unpacked");
            }
        }
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(archive)?));
        for entry in tar.entries().with_context(|| format!("{name}: not a gzip'd tar archive"))? {
            let mut entry = entry.with_context(|| format!("{name}: damaged archive"))?;
            let rel = entry.path()?.to_path_buf();
            let kind = entry.header().entry_type();
            if !safe_relative(&rel) || kind.is_symlink() || kind.is_hard_link() {
                return Err(refuse(&rel.to_string_lossy()));
            }
            let dest = into.join(&rel);
            if kind.is_dir() {
                fs::create_dir_all(&dest)?;
            } else if kind.is_file() {
                not_there_yet(&rel, &dest)?;
                fs::create_dir_all(dest.parent().expect("inside"))?;
                unpack_entry(name, &mut entry, &dest, &mut written, limits)?;
            } else if !matches!(
                kind,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
            ) {
                bail!("{name}: archive entry {:?} is a {kind:?}, not a file or directory; only those are unpacked (repack it without special files)", rel.display());
            }
        }
    } else {
        bail!("{name}: extract = true, but only .tar.gz, .tgz and .zip can be unpacked");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside() {
        assert!(safe_relative(Path::new("a/b.h5")));
        assert!(!safe_relative(Path::new("../x")));
        assert!(!safe_relative(Path::new("/etc/passwd")));
        assert!(!safe_relative(Path::new("a/../../x")));
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("https://h/x/2022-07-26-31-data.h5?raw=true"),
            "2022-07-26-31-data.h5"
        );
        assert_eq!(strip_archive_ext("data.tar.gz"), "data");
    }
}
