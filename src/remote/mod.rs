//! Remotes: another store, on a shared directory or in an S3-compatible bucket, laid out
//! like the local one (`objects/ab/cdef…`, `actions/ab/cdef….json`).
//!
//! Both kinds go through the `object_store` crate. Its writes are atomic (a directory
//! remote writes a staging file and renames it; S3 makes an object visible only when its
//! upload completes), so a partial transfer is never seen under its final name. Objects
//! are named by their hash, so two teammates pushing at once write the same bytes to the
//! same names; an action record is pushed only after all its objects are there, so a
//! record on the remote always has its outputs. Everything pulled is re-hashed before it
//! enters the local store; bytes that do not match their name are refused.

mod aws_profile;
mod transfer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::RemoteDecl;
use crate::hash::Hash;
use crate::store::{action_rel, object_rel, output_tree_hash, ActionRecord, Store};

pub use transfer::{Direction, Transfer};

/// Objects moved at once.
const PARALLEL: usize = 8;

pub struct Remote {
    pub name: String,
    /// As written in pipeline.toml, for messages.
    pub url: String,
    client: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Connect (lazily: nothing is sent until the first request) to a declared remote. A
    /// directory remote is created for a push (`writing`), never for a pull: a mistyped
    /// path must not look like an empty remote.
    pub fn open(name: &str, decl: &RemoteDecl, workspace: &Path, writing: bool) -> Result<Remote> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the I/O runtime for remotes")?;
        let (client, prefix): (Arc<dyn ObjectStore>, String) = if let Some(rest) =
            decl.url.strip_prefix("s3://")
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("remote {name}: {:?} names no bucket; write s3://BUCKET/PREFIX", decl.url);
            }
            (Arc::new(s3_client(name, decl, bucket)?), prefix.trim_matches('/').to_string())
        } else {
            let dir = workspace.join(decl.url.strip_prefix("file://").unwrap_or(&decl.url));
            if !writing && !dir.is_dir() {
                return Err(crate::error::environment(anyhow!("remote {name}: the directory {} does not exist; mount the shared drive or fix remotes.{name}.url", dir.display())));
            }
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("remote {name}: cannot create the directory {}; mount the shared drive or fix remotes.{name}.url", dir.display())
            })?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("remote {name}: cannot open {}", dir.display()))?;
            (Arc::new(local), String::new())
        };
        Ok(Remote { name: name.to_string(), url: decl.url.clone(), client, prefix, runtime })
    }

    fn path(&self, rel: String) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn object_path(&self, h: &Hash) -> ObjectPath {
        self.path(object_rel(h))
    }

    fn action_path(&self, key: &Hash) -> ObjectPath {
        self.path(action_rel(key))
    }

    /// Say what went wrong in words a user can act on.
    fn explain(&self, what: &str, e: object_store::Error) -> anyhow::Error {
        let hint = match Cause::of(&e) {
            Cause::Credentials => {
                " — the credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            }
            Cause::Unreachable => {
                " — the endpoint cannot be reached: check remotes.NAME.endpoint and the network"
            }
            Cause::NoBucket => " — the bucket does not exist: create it, or fix remotes.NAME.url",
            Cause::Other => "",
        };
        crate::error::environment(anyhow!("remote {} ({}): {what}: {e}{hint}", self.name, self.url))
    }

    /// The action record stored for `key`, checked: its name, key and output hash agree.
    pub fn action(&self, key: &Hash) -> Result<Option<ActionRecord>> {
        self.runtime.block_on(self.read_action(key))
    }

    /// The records for many keys, fetched concurrently (in the order of `keys`).
    pub fn actions(&self, keys: &[Hash]) -> Result<Vec<Option<ActionRecord>>> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        self.runtime.block_on(
            stream::iter(keys.iter().map(|k| self.read_action(k)))
                .buffered(PARALLEL * 2)
                .try_collect(),
        )
    }

    async fn read_action(&self, key: &Hash) -> Result<Option<ActionRecord>> {
        let path = self.action_path(key);
        let got = async { self.client.get(&path).await?.bytes().await }.await;
        let bytes = match got {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.explain(&format!("cannot read {path}"), e)),
        };
        let rec = ActionRecord::decode(&bytes, key)
            .map_err(|e| anyhow!("remote {}: {path} is {e}; it was not imported", self.name))?;
        if output_tree_hash(&rec.outputs) != rec.output_hash {
            bail!("remote {}: {path} lists outputs that do not match its output hash (altered); it was not imported", self.name);
        }
        Ok(Some(rec))
    }

    /// Copy the records (and first their objects) that the remote lacks.
    pub fn push(&self, store: &Store, records: &[ActionRecord], progress: &Transfer) -> Result<()> {
        let objects = transfer::distinct_objects(records);
        progress.plan(&objects);
        self.runtime.block_on(async {
            use futures::stream::{self, TryStreamExt};
            stream::iter(objects.iter().map(Ok))
                .try_for_each_concurrent(PARALLEL, |o| async move {
                    let dest = self.object_path(&o.hash);
                    match self.client.head(&dest).await {
                        Ok(meta) if meta.size == o.size => {
                            progress.already_there(o.size);
                            return Ok(());
                        }
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.explain(&format!("cannot look up {dest}"), e)),
                    }
                    transfer::upload(self.client.clone(), store, o, dest, progress)
                        .await
                        .map_err(|e| anyhow!("remote {}: {e:#}", self.name))
                })
                .await?;
            // Records last: a record on the remote always has its objects.
            stream::iter(records.iter().map(Ok))
                .try_for_each_concurrent(PARALLEL, |rec| async move {
                    let dest = self.action_path(&rec.key);
                    match self.client.head(&dest).await {
                        Ok(_) => {
                            progress.record(false);
                            return Ok(());
                        }
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.explain(&format!("cannot look up {dest}"), e)),
                    }
                    let mut bytes = serde_json::to_vec_pretty(rec)?;
                    bytes.push(b'\n');
                    self.client
                        .put(&dest, bytes.into())
                        .await
                        .map_err(|e| self.explain(&format!("cannot write {dest}"), e))?;
                    progress.record(true);
                    Ok(())
                })
                .await
        })
    }

    /// Bring the records' missing objects into the local store, verified, then the records.
    pub fn pull(&self, store: &Store, records: &[ActionRecord], progress: &Transfer) -> Result<()> {
        let objects: Vec<_> = transfer::distinct_objects(records)
            .into_iter()
            .filter(|o| !store.object_intact(&o.hash, o.size))
            .collect();
        progress.plan(&objects);
        self.runtime.block_on(async {
            use futures::stream::{self, TryStreamExt};
            stream::iter(objects.iter().map(Ok))
                .try_for_each_concurrent(PARALLEL, |o| async move {
                    let src = self.object_path(&o.hash);
                    transfer::download(self.client.as_ref(), store, o, &src, progress)
                        .await
                        .map_err(|e| match e.downcast::<object_store::Error>() {
                            Ok(e) => self.explain(&format!("cannot read {src}"), e),
                            Err(e) => anyhow!("remote {}: {e:#}", self.name),
                        })
                })
                .await
        })?;
        for rec in records {
            store.write_action(rec)?;
            progress.record(true);
        }
        Ok(())
    }

    /// `run --pull`: the result for `key` from the remote, if it has one.
    pub fn fetch(&self, store: &Store, key: &Hash) -> Result<Option<ActionRecord>> {
        let Some(rec) = self.action(key)? else { return Ok(None) };
        self.pull(store, std::slice::from_ref(&rec), &Transfer::quiet(Direction::Pull))?;
        Ok(Some(rec))
    }
}

/// Why a request to a remote failed, told by the error's kind, its HTTP status and the
/// `<Code>` of S3's error document — never by searching the message, whose URL holds
/// object hashes (a hash containing "403" is no refusal).
#[derive(Debug, PartialEq, Eq)]
enum Cause {
    Credentials,
    Unreachable,
    NoBucket,
    Other,
}

impl Cause {
    fn of(e: &object_store::Error) -> Cause {
        use object_store::client::{HttpError, HttpErrorKind};
        // object_store maps HTTP 401 and 403 to these variants.
        if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) {
            return Cause::Credentials;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(http) = s.downcast_ref::<HttpError>() {
                return match http.kind() {
                    HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted => Cause::Unreachable,
                    _ => Cause::Other,
                };
            }
            source = s.source();
        }
        match s3_error_code(&e.to_string()) {
            Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied") => {
                Cause::Credentials
            }
            Some("NoSuchBucket") => Cause::NoBucket,
            _ => Cause::Other,
        }
    }
}

/// The `<Code>…</Code>` of an S3 error document quoted in an error message. A URL cannot
/// hold `<` unescaped, so this never matches part of an object's name.
fn s3_error_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

fn s3_client(name: &str, decl: &RemoteDecl, bucket: &str) -> Result<object_store::aws::AmazonS3> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ClientOptions, RetryConfig};
    let timeout = Duration::from_secs(decl.timeout_s.max(1));
    // Credentials and region: the usual AWS environment variables, else the shared
    // credentials/config files' profile (AWS_PROFILE, default "default").
    let mut b = AmazonS3Builder::from_env();
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        for (key, value) in aws_profile::credentials() {
            b = b.with_config(key, value);
        }
    }
    let mut b = b.with_bucket_name(bucket).with_retry(RetryConfig {
        max_retries: 3,
        retry_timeout: timeout * 2,
        ..Default::default()
    });
    let mut options = ClientOptions::new()
        .with_connect_timeout(timeout.min(Duration::from_secs(10)))
        .with_timeout(timeout * 4);
    if let Some(endpoint) = &decl.endpoint {
        b = b.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            options = options.with_allow_http(true);
        }
    }
    if let Some(region) = &decl.region {
        b = b.with_region(region);
    }
    b.with_client_options(options).build().map_err(|e| anyhow!("remote {name} ({}): {e}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION or remotes.{name}.region)", decl.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to a dead endpoint for an object whose name holds "403" and "Forbidden" is
    /// unreachable, not refused (the name is in the message; the cause is not).
    #[test]
    fn causes_come_from_the_error_not_its_url() {
        use object_store::aws::AmazonS3Builder;
        let client = AmazonS3Builder::new()
            .with_bucket_name("bucket")
            .with_endpoint("http://127.0.0.1:1")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let path = ObjectPath::from("prefix/objects/40/3403Forbidden0403");
        let e = runtime.block_on(client.head(&path)).unwrap_err();
        assert!(e.to_string().contains("403"), "{e}");
        assert_eq!(Cause::of(&e), Cause::Unreachable, "{e}");
    }

    #[test]
    fn s3_codes() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><BucketName>b403</BucketName></Error>";
        assert_eq!(s3_error_code(body), Some("NoSuchBucket"));
        assert_eq!(s3_error_code("GET http://h/objects/40/3403 - 403"), None);
    }
}
