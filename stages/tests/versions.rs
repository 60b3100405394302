//! Stage code versions are derived from source files (build.rs): every source file must be
//! listed for some kind, or declared neutral, so no change can escape versioning.

include!("../versions.rs");

use std::path::Path;

fn listed(path: &str) -> bool {
    NEUTRAL.contains(&path)
        || KINDS.iter().any(|(_, files)| {
            files.iter().any(|f| path == *f || path.starts_with(&format!("{f}/")))
        })
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(env!("CARGO_MANIFEST_DIR")).map(|r| r.display().to_string());
            out.push(rel.unwrap_or_else(|_| {
                format!(
                    "../torch/{}",
                    p.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("../torch"))
                        .unwrap()
                        .display()
                )
            }));
        }
    }
}

#[test]
fn every_source_file_belongs_to_a_version() {
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../torch/src"), &mut files);
    let missing: Vec<&String> = files.iter().filter(|f| !listed(f)).collect();
    assert!(
        missing.is_empty(),
        "add these to stages/versions.rs (a kind's list, or NEUTRAL): {missing:?}"
    );
}

#[test]
fn versions_differ_between_kinds_and_name_them() {
    let v = [
        env!("WORMFLOW_VERSION_DOWNLOAD"),
        env!("WORMFLOW_VERSION_STANDARDIZE"),
        env!("WORMFLOW_VERSION_PREPROCESS"),
        env!("WORMFLOW_VERSION_SPLIT"),
        env!("WORMFLOW_VERSION_SAMPLE"),
        env!("WORMFLOW_VERSION_SYNTHESIZE"),
    ];
    for (i, a) in v.iter().enumerate() {
        assert_eq!(a.len(), a.split('-').next().unwrap().len() + 17, "{a}");
        for b in &v[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
