//! Moving one object each way, verified, and the progress bar and counts of a transfer.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hash::Hash;
use crate::store::{unique_suffix, ActionRecord, OutputFile, Store};

/// Bytes read or sent at a time (also the multipart part size).
const CHUNK: usize = 8 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
}

/// Progress of a push or pull: a byte bar on a terminal, counts for the summary.
pub struct Transfer {
    direction: Direction,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    objects_sent: AtomicU64,
    bytes_sent: AtomicU64,
    objects_present: AtomicU64,
    records_sent: AtomicU64,
    records_present: AtomicU64,
}

impl Transfer {
    /// With a byte bar when stderr is a terminal.
    pub fn new(direction: Direction, remote: &str) -> Transfer {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let verb = if direction == Direction::Push { "push" } else { "pull" };
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{verb} {remote} [{{bar:30.cyan/blue}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Transfer::with_bar(direction, bar)
    }

    /// No bar (one node pulled during `run --pull`).
    pub fn quiet(direction: Direction) -> Transfer {
        Transfer::with_bar(direction, None)
    }

    fn with_bar(direction: Direction, bar: Option<indicatif::ProgressBar>) -> Transfer {
        Transfer {
            direction,
            bar,
            started: Instant::now(),
            objects_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            objects_present: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            records_present: AtomicU64::new(0),
        }
    }

    pub fn plan(&self, objects: &[OutputFile]) {
        if let Some(bar) = &self.bar {
            bar.inc_length(objects.iter().map(|o| o.size).sum());
        }
    }

    fn moved(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn object_done(&self, size: u64) {
        self.objects_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(size, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} objects", self.objects_sent.load(Ordering::Relaxed)));
        }
    }

    pub fn already_there(&self, size: u64) {
        self.objects_present.fetch_add(1, Ordering::Relaxed);
        self.moved(size);
    }

    pub fn record(&self, sent: bool) {
        let counter = if sent { &self.records_sent } else { &self.records_present };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One line saying what moved, how fast, and what was already there.
    pub fn summary(&self, remote: &str) -> String {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (objects, bytes) = (get(&self.objects_sent), get(&self.bytes_sent));
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let (verb, prep) =
            if self.direction == Direction::Push { ("pushed", "to") } else { ("pulled", "from") };
        format!(
            "{verb} {} objects ({:.1} MB) and {} records {prep} {remote} in {secs:.1} s ({:.1} MB/s, {:.0} objects/s); already there: {} objects, {} records",
            objects,
            bytes as f64 / 1e6,
            get(&self.records_sent),
            bytes as f64 / 1e6 / secs,
            objects as f64 / secs,
            get(&self.objects_present),
            get(&self.records_present),
        )
    }
}

/// The objects of these records, each once.
pub fn distinct_objects(records: &[ActionRecord]) -> Vec<OutputFile> {
    let mut seen = std::collections::HashSet::new();
    records.iter().flat_map(|r| r.outputs.iter()).filter(|o| seen.insert(o.hash)).cloned().collect()
}

/// Send a local object, hashing it as it goes: a local object damaged since it was stored
/// is not sent (the upload is aborted, so nothing appears under its name).
pub async fn upload(
    client: Arc<dyn ObjectStore>,
    store: &Store,
    o: &OutputFile,
    dest: ObjectPath,
    progress: &Transfer,
) -> Result<()> {
    let src = store.object_path(&o.hash);
    let mut file = tokio::fs::File::open(&src)
        .await
        .with_context(|| format!("cannot read local object {}", src.display()))?;
    let mut writer = object_store::buffered::BufWriter::with_capacity(client, dest.clone(), CHUNK);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer.put(Bytes::copy_from_slice(&buf[..n])).await?;
        progress.moved(n as u64);
    }
    if Hash(*hasher.finalize().as_bytes()) != o.hash {
        writer.abort().await.ok();
        bail!("local object {} is damaged (its bytes no longer match its name); not pushed — run `wormflow verify --repair`, then rerun the node", src.display());
    }
    writer.shutdown().await.with_context(|| format!("cannot write {dest}"))?;
    progress.object_done(o.size);
    Ok(())
}

/// Fetch a remote object into a temporary file, hashing it as it arrives; only bytes
/// matching the name (and size) enter the local store.
pub async fn download(
    client: &dyn ObjectStore,
    store: &Store,
    o: &OutputFile,
    src: &ObjectPath,
    progress: &Transfer,
) -> Result<()> {
    use futures::StreamExt;
    let tmp = store.root.join("tmp").join(format!("pull-{}", unique_suffix()));
    let result = async {
        let mut stream = client.get(src).await?.into_stream();
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
            size += chunk.len() as u64;
            progress.moved(chunk.len() as u64);
        }
        file.flush().await?;
        let got = Hash(*hasher.finalize().as_bytes());
        if got != o.hash || size != o.size {
            bail!(
                "object {src} arrived as {size} bytes hashing to {got}, not {} ({} bytes): the remote copy is damaged; refused, nothing imported — re-push it from a good store",
                o.hash, o.size
            );
        }
        store.ingest_hashed(&tmp, got, size)?;
        progress.object_done(o.size);
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
