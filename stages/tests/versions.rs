//! Stage code versions come from the closure of what each kind's code reaches (build.rs,
//! code_closure.rs). These tests check that closure independently (a plain text scan of the
//! same files), that the built versions are the ones it gives, and that an edit to a shared
//! file or a crate bump changes exactly the kinds that reach it.

include!("../code_closure.rs");
include!("../versions.rs");

use std::path::PathBuf;

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lock_at(base: &Path) -> Lock {
    Lock::read(&base.join("../Cargo.lock")).unwrap()
}

fn versions_at(base: &Path) -> BTreeMap<&'static str, (String, Reach)> {
    let lock = lock_at(base);
    KINDS
        .iter()
        .map(|(kind, roots, leaves)| {
            let reach = reach(base, &lock, roots, leaves).unwrap();
            let manifest = manifest(base, &lock, &reach).unwrap();
            (*kind, (version_of(kind, &manifest), reach))
        })
        .collect()
}

/// Source text without `//` comments, string literals kept (include_str! paths are in them).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following each occurrence of `prefix` (e.g. "crate::" → "neurons").
fn words_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            let before = code[..*i].chars().last();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn every_kinds_closure_is_closed_over_use_mod_and_include() {
    let base = base();
    for (kind, (_, reach)) in versions_at(&base) {
        let has = |f: &str| reach.files.contains(f);
        for file in reach.files.iter().filter(|f| f.ends_with(".rs")) {
            if KINDS.iter().any(|(k, _, leaves)| *k == kind && leaves.contains(&file.as_str())) {
                continue; // hashed, not followed (the torch helper's dispatcher)
            }
            let code = code_of(&std::fs::read_to_string(base.join(file)).unwrap());
            let code = code.split("mod tests {").next().unwrap(); // unit tests do not count
            let (pkg, src) = PACKAGES
                .iter()
                .find(|(_, _, src)| file.starts_with(&format!("{src}/")))
                .map(|(name, _, src)| (*name, *src))
                .unwrap();
            let module_exists = |src: &str, m: &str| {
                let (a, b) = (format!("{src}/{m}.rs"), format!("{src}/{m}/mod.rs"));
                [a, b].into_iter().find(|f| base.join(f).is_file())
            };
            // crate::m and other_crate::m name the module m of that crate.
            let mut named: Vec<(&str, &str)> =
                words_after(code, "crate::").into_iter().map(|m| (src, m)).collect();
            for (name, _, other_src) in PACKAGES {
                named.extend(
                    words_after(code, &format!("{name}::")).into_iter().map(|m| (*other_src, m)),
                );
            }
            for (src, m) in named {
                if let Some(target) = module_exists(src, m) {
                    assert!(
                        has(&target),
                        "{kind}: {file} names {m} ({target}) but the closure lacks it"
                    );
                } else {
                    // An item of the crate root itself.
                    let root = format!("{src}/lib.rs");
                    assert!(
                        has(&root) || !code.contains(&format!("::{m}")),
                        "{kind}: {file} uses {m} from {root}"
                    );
                }
            }
            // mod m; in a module that is not a crate root.
            let dir = Path::new(file).parent().unwrap().display().to_string();
            let own_dir = if file.ends_with("/mod.rs") {
                dir.clone()
            } else {
                file.trim_end_matches(".rs").to_string()
            };
            if !file.ends_with("/lib.rs") {
                for m in words_after(code, "mod ") {
                    let rest = &code[code.find(&format!("mod {m}")).unwrap() + 4 + m.len()..];
                    if rest.trim_start().starts_with(';') {
                        let a = format!("{own_dir}/{m}.rs");
                        let b = format!("{own_dir}/{m}/mod.rs");
                        assert!(
                            has(&a) || has(&b),
                            "{kind}: {file} declares mod {m}, not in the closure"
                        );
                    }
                }
            }
            // super::m from a module file.
            if code.contains("super::") && !file.ends_with("/lib.rs") {
                let parent = if file.ends_with("/mod.rs") {
                    Path::new(&dir).parent().unwrap().display().to_string()
                } else {
                    dir.clone()
                };
                for m in words_after(code, "super::") {
                    let a = format!("{parent}/{m}.rs");
                    if base.join(&a).is_file() {
                        assert!(has(&a), "{kind}: {file} uses super::{m}, not in the closure");
                    }
                }
            }
            // include_str!/include_bytes! of a file.
            for inc in ["include_str!(\"", "include_bytes!(\""] {
                for (i, _) in code.match_indices(inc) {
                    let rest = &code[i + inc.len()..];
                    let lit = &rest[..rest.find('"').unwrap()];
                    let target = normalise(&Path::new(&dir).join(lit));
                    assert!(
                        has(&target),
                        "{kind}: {file} includes {lit} ({target}), not in the closure"
                    );
                }
            }
            if code.contains("#[template(") {
                assert!(has("templates/report.html"), "{kind}: {file} renders templates/");
            }
            let _ = pkg;
        }
    }
}

#[test]
fn the_built_versions_are_the_closures_versions() {
    let computed = versions_at(&base());
    let built = BTreeMap::from([
        ("download", env!("WORMFLOW_VERSION_DOWNLOAD")),
        ("synthesize", env!("WORMFLOW_VERSION_SYNTHESIZE")),
        ("standardize", env!("WORMFLOW_VERSION_STANDARDIZE")),
        ("preprocess", env!("WORMFLOW_VERSION_PREPROCESS")),
        ("split", env!("WORMFLOW_VERSION_SPLIT")),
        ("sample", env!("WORMFLOW_VERSION_SAMPLE")),
        ("train", env!("WORMFLOW_VERSION_TRAIN")),
        ("evaluate", env!("WORMFLOW_VERSION_EVALUATE")),
        ("fit", env!("WORMFLOW_VERSION_FIT")),
        ("report", env!("WORMFLOW_VERSION_REPORT")),
    ]);
    assert_eq!(built.len(), KINDS.len());
    for (kind, version) in built {
        assert_eq!(computed[kind].0, version, "{kind}");
        assert!(version.starts_with(&format!("{kind}-")) && version.len() == kind.len() + 17);
    }
}

#[test]
fn every_source_file_is_reached_by_a_kind_or_is_plumbing() {
    // Reached by no kind: the crate roots (module lists and registration) and the engine's
    // half of the contract that no stage calls.
    const PLUMBING: &[&str] = &["src/lib.rs", "../torch/src/lib.rs"];
    let base = base();
    let reached: BTreeSet<String> =
        versions_at(&base).into_values().flat_map(|(_, r)| r.files).collect();
    let mut files = Vec::new();
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(normalise(&pathdiff(&p, base)));
            }
        }
    }
    fn pathdiff(p: &Path, base: &Path) -> PathBuf {
        match p.strip_prefix(base) {
            Ok(r) => r.to_path_buf(),
            Err(_) => Path::new("..").join(p.strip_prefix(base.parent().unwrap()).unwrap()),
        }
    }
    for (_, _, src) in PACKAGES {
        walk(&base.join(src), &base, &mut files);
    }
    let unreached: Vec<&String> =
        files.iter().filter(|f| !reached.contains(*f) && !PLUMBING.contains(&f.as_str())).collect();
    assert!(unreached.is_empty(), "no stage kind reaches {unreached:?}: a kind's root in stages/versions.rs, or PLUMBING here");
}

/// A copy of everything the closure reads, to edit.
fn copy_sources() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = base().join("..");
    for dir in ["stages/src", "stages/templates", "stages/data", "torch/src", "api/src"] {
        copy_dir(&root.join(dir), &tmp.path().join(dir));
    }
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    for f in ["Cargo.lock", "data/neurons.csv"] {
        std::fs::copy(root.join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn changed_kinds(
    before: &BTreeMap<&'static str, (String, Reach)>,
    after: &BTreeMap<&'static str, (String, Reach)>,
) -> BTreeSet<&'static str> {
    before.keys().filter(|k| before[*k].0 != after[*k].0).copied().collect()
}

#[test]
fn editing_neurons_rs_changes_exactly_the_kinds_that_use_it() {
    let tmp = copy_sources();
    let stages = tmp.path().join("stages");
    let before = versions_at(&stages);
    let users: BTreeSet<&str> = before
        .iter()
        .filter(|(_, (_, r))| r.files.contains("src/neurons.rs"))
        .map(|(k, _)| *k)
        .collect();
    // What the hand-kept lists missed: split, train and evaluate use neurons.rs.
    for k in ["split", "train", "evaluate", "standardize", "report"] {
        assert!(users.contains(k), "{k} uses neurons.rs: {users:?}");
    }
    assert!(!users.contains("download"), "{users:?}");
    let path = stages.join("src/neurons.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\nconst _EDITED: u8 = 1;\n")).unwrap();
    let after = versions_at(&stages);
    assert_eq!(changed_kinds(&before, &after), users);
}

#[test]
fn a_crate_bump_in_cargo_lock_changes_the_kinds_that_use_it() {
    let tmp = copy_sources();
    let stages = tmp.path().join("stages");
    let before = versions_at(&stages);
    let lock_path = tmp.path().join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    // polars (only the report's sweep tables use it) to a made-up version.
    let marker = "name = \"polars\"\nversion = \"";
    let at = lock.find(marker).expect("polars in Cargo.lock") + marker.len();
    let end = at + lock[at..].find('"').unwrap();
    let bumped = format!("{}99.0.0{}", &lock[..at], &lock[end..]);
    let bumped = bumped.replace(&format!("\"polars {}\"", &lock[at..end]), "\"polars 99.0.0\"");
    std::fs::write(&lock_path, bumped).unwrap();
    let after = versions_at(&stages);
    assert_eq!(changed_kinds(&before, &after), BTreeSet::from(["report"]));
    let lock = lock_at(&stages);
    let m = manifest(&stages, &lock, &after["report"].1).unwrap();
    assert!(m["crate polars"].starts_with("99.0.0 "), "{m:?}");
}
