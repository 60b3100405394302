//! DANDI archive sources for `download`: `dandi:<dandiset>/<version>/<asset path>` names one
//! asset, `dandi:<dandiset>/<version>/<folder>/` (or no path) every `.nwb` asset under it.
//!
//! Resolved through the archive's REST API (https://api.dandiarchive.org/api, `dandi_api`):
//! `GET /dandisets/{id}/versions/{version}/assets/?path=…` lists assets (paginated by `next`),
//! `GET /dandisets/{id}/versions/{version}/assets/{asset_id}/` gives an asset's metadata,
//! whose `digest["dandi:sha2-256"]` pins the bytes; `GET /assets/{asset_id}/download/`
//! redirects to the file on S3. A published version never changes, so the URL text is a
//! fine key; `draft` can, so it needs a pin or `allow_unpinned`.

use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use wormflow_api::cancel::check;

/// A parsed `dandi:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DandiRef {
    pub dandiset: String,
    pub version: String,
    /// An asset path, a folder ending in `/`, or "" (the whole dandiset).
    pub path: String,
}

impl DandiRef {
    pub fn parse(url: &str) -> Option<Result<DandiRef, String>> {
        let rest = url.strip_prefix("dandi:")?;
        let mut parts = rest.splitn(3, '/');
        let (dandiset, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = parts.next().unwrap_or("").to_string();
        if dandiset.len() != 6
            || !dandiset.bytes().all(|b| b.is_ascii_digit())
            || version.is_empty()
        {
            return Some(Err(format!(
                "{url}: a DANDI source is dandi:<6-digit dandiset>/<version>/<asset path>, e.g. dandi:000776/0.241009.1509/sub-2022-06-14-01-SWF702/sub-2022-06-14-01-SWF702_ses-20220614_behavior+image+ophys.nwb"
            )));
        }
        Some(Ok(DandiRef { dandiset: dandiset.into(), version: version.into(), path }))
    }

    /// True when it names a folder (or the whole dandiset) rather than one asset.
    pub fn is_folder(&self) -> bool {
        self.path.is_empty() || self.path.ends_with('/')
    }

    pub fn is_draft(&self) -> bool {
        self.version == "draft"
    }

    /// The `dandi:` reference of one asset (or folder) `path` of this dandiset version.
    pub fn reference(&self, path: &str) -> String {
        format!("dandi:{}/{}/{path}", self.dandiset, self.version)
    }

    /// Where one asset lands in the output: its path below the folder named (one asset:
    /// its file name).
    pub fn dest_of(&self, asset_path: &str) -> String {
        if self.is_folder() {
            asset_path.strip_prefix(&self.path).unwrap_or(asset_path).to_string()
        } else {
            asset_path.rsplit('/').next().unwrap_or(asset_path).to_string()
        }
    }
}

/// One asset, ready to fetch.
#[derive(Debug, Clone)]
pub struct Asset {
    pub path: String,
    pub download_url: String,
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    next: Option<String>,
    results: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    asset_id: String,
    path: String,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

fn get_json<T: serde::de::DeserializeOwned>(agent: &ureq::Agent, url: &str) -> Result<T> {
    let resp =
        agent.get(url).call().with_context(|| format!("{url}: the DANDI API cannot be reached"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        bail!("{url}: the DANDI API answered HTTP {status}; check the dandiset, version and path (or params.dandi_api)");
    }
    let body = resp
        .into_body()
        .read_to_string()
        .with_context(|| format!("{url}: reading the DANDI API's answer"))?;
    serde_json::from_str(&body).with_context(|| format!("{url}: not the DANDI API's JSON"))
}

/// Most listing pages followed: 10,000 pages of 1,000 assets is far beyond the largest
/// dandiset; a server whose `next` never ends is refused, not followed for ever.
const MAX_PAGES: usize = 10_000;

/// Every asset the listing at `first` holds, following `next` until it ends. A `next`
/// seen before (a server that loops) or more than MAX_PAGES pages is an error; `cancel`
/// is checked before each page.
fn list_all(
    agent: &ureq::Agent,
    first: String,
    r: &DandiRef,
    cancel: &AtomicBool,
) -> Result<Vec<Listed>> {
    let mut seen = std::collections::HashSet::new();
    let mut next = Some(first);
    let mut listed = Vec::new();
    while let Some(url) = next {
        check(cancel).with_context(|| format!("{}: listing the dandiset", r.reference(&r.path)))?;
        if !seen.insert(url.clone()) {
            bail!("{}: the DANDI API's listing loops (page {url} comes again after {} pages); nothing was fetched. Check params.dandi_api", r.reference(&r.path), seen.len());
        }
        if seen.len() > MAX_PAGES {
            bail!("{}: the DANDI API's listing goes on past {MAX_PAGES} pages; nothing was fetched. Check params.dandi_api, or name a folder of the dandiset", r.reference(&r.path));
        }
        let page: Page = get_json(agent, &url)?;
        listed.extend(page.results);
        next = page.next.filter(|n| !n.is_empty());
    }
    Ok(listed)
}

/// The assets a reference names, each with its download URL and published sha256. Asset
/// paths come from a server: each must be a relative path inside the output (no `..`,
/// no absolute path) before anything is written.
pub fn resolve(
    agent: &ureq::Agent,
    api: &str,
    r: &DandiRef,
    cancel: &AtomicBool,
) -> Result<Vec<Asset>> {
    let api = api.trim_end_matches('/');
    let base = format!("{api}/dandisets/{}/versions/{}", r.dandiset, r.version);
    let query = form_urlencoded::byte_serialize(r.path.as_bytes()).collect::<String>();
    let listed = list_all(agent, format!("{base}/assets/?path={query}&page_size=1000"), r, cancel)?;
    for a in &listed {
        if let Err(why) = wormflow_api::relpath::check_relative_path(&a.path) {
            bail!(
                "dandiset {} version {}: the archive lists an asset whose path {:?} {why}; it would be written outside the output, so nothing was fetched (is params.dandi_api the real archive?)",
                r.dandiset, r.version, a.path
            );
        }
    }
    // `path=` matches by prefix: keep what the reference means.
    let chosen: Vec<Listed> = if r.is_folder() {
        listed
            .into_iter()
            .filter(|a| a.path.starts_with(&r.path) && a.path.ends_with(".nwb"))
            .collect()
    } else {
        listed.into_iter().filter(|a| a.path == r.path).collect()
    };
    if chosen.is_empty() {
        bail!(
            "{}: the archive lists no such {} in dandiset {} version {}; check the path (as shown on dandiarchive.org under Files)",
            r.reference(&r.path),
            if r.is_folder() { "NWB asset under that folder" } else { "asset" },
            r.dandiset,
            r.version
        );
    }
    chosen
        .into_iter()
        .map(|a| {
            check(cancel).with_context(|| format!("{}: resolving assets", r.reference(&r.path)))?;
            let meta: Metadata = get_json(agent, &format!("{base}/assets/{}/", a.asset_id))?;
            Ok(Asset {
                download_url: format!("{api}/assets/{}/download/", a.asset_id),
                sha256: meta.digest.get("dandi:sha2-256").cloned(),
                path: a.path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r =
            DandiRef::parse("dandi:000776/0.241009.1509/sub-1/sub-1_ophys.nwb").unwrap().unwrap();
        assert_eq!(
            (r.dandiset.as_str(), r.version.as_str(), r.path.as_str()),
            ("000776", "0.241009.1509", "sub-1/sub-1_ophys.nwb")
        );
        assert!(!r.is_folder() && !r.is_draft());
        assert_eq!(r.dest_of("sub-1/sub-1_ophys.nwb"), "sub-1_ophys.nwb");
        let all = DandiRef::parse("dandi:000541/draft").unwrap().unwrap();
        assert!(all.is_folder() && all.is_draft());
        assert_eq!(all.dest_of("sub-2/x.nwb"), "sub-2/x.nwb");
        assert!(DandiRef::parse("dandi:776/x").unwrap().is_err());
        assert!(DandiRef::parse("https://x").is_none());
    }
}
