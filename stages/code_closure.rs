// What a stage kind's code version is made of: the closure of the source files its roots
// can reach, and the locked versions of the crates those files use. Shared (by `include!`)
// between build.rs, which derives the versions, and tests/versions.rs, which checks them.
//
// Hand-written on purpose: no crate resolves "which files of this workspace can this module
// reach" (cargo's own fingerprint works per crate, which would make every kind depend on every
// file). It reads tokens with proc-macro2 (so comments and string contents never count as
// references) and follows, from each file:
// - paths starting with `crate`, `self`, `super`, a workspace crate (`wormflow_api`,
//   `wormflow_stages`, `wormflow_torch`) or, outside a crate root, a module the file declares —
//   in `use` trees, code and macro arguments alike — to the deepest module file they name;
// - `mod x;` of a module that is not a crate root (a module's children are part of it);
// - `include_str!`/`include_bytes!`/`include!` of a literal path, and askama's
//   `#[template(path = …)]` (the whole templates/ directory: templates include each other);
// - paths starting with a crate the package depends on, to that crate's locked version and
//   the locked versions of everything it depends on (Cargo.lock).
// Inline `mod tests { … }` is skipped (unit tests cannot change outputs).
// A crate root (lib.rs) is reached only through a path naming one of its own items, and then
// its declared modules are followed only where it names them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Workspace packages the closure follows: (name in paths, package name, src dir from stages/).
const PACKAGES: &[(&str, &str, &str)] = &[
    ("wormflow_stages", "wormflow-stages", "src"),
    ("wormflow_torch", "wormflow-torch", "../torch/src"),
    ("wormflow_api", "wormflow-api", "../api/src"),
];

/// Everything one kind's outputs can depend on.
#[derive(Debug, Default)]
pub struct Reach {
    /// Files relative to stages/ (e.g. `src/neurons.rs`, `../data/neurons.csv`).
    pub files: BTreeSet<String>,
    /// Crates used directly, by package name, with the workspace package that uses them.
    pub crates: BTreeSet<(String, String)>,
}

/// One reference found in a source file.
#[derive(Debug)]
enum Reference {
    Path(Vec<String>, Vec<String>), // (module path of the scope, segments)
    Include(String),
    Templates,
    ChildModule(String),
}

/// Lexical normalisation (`src/../../data/x` → `../data/x`) without touching the disk.
fn normalise(path: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir if out.last().is_some_and(|l| l != "..") => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    out.join("/")
}

/// The package a file belongs to and its module path (`src/report/svg.rs` → `report::svg`).
fn locate(file: &str) -> Option<(usize, Vec<String>, bool)> {
    for (i, (_, _, src)) in PACKAGES.iter().enumerate() {
        let Some(rel) = file.strip_prefix(&format!("{src}/")) else { continue };
        let rel = rel.strip_suffix(".rs")?;
        let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
        let is_root = parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main");
        if is_root || parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        return Some((i, parts, is_root));
    }
    None
}

fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!((tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':')
}

/// Collect the references in one token stream; `module` is the scope's module path.
fn scan(stream: TokenStream, module: &[String], out: &mut Vec<Reference>) {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(id) => {
                let name = id.to_string();
                let after_sep = i >= 2 && is_path_sep(&tokens, i - 2);
                let after_dot = i >= 1
                    && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '.');
                if matches!(name.as_str(), "include_str" | "include_bytes" | "include")
                    && matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!')
                {
                    if let Some(TokenTree::Group(g)) = tokens.get(i + 2) {
                        let lit = g.stream().into_iter().next().map(|t| t.to_string());
                        match lit.filter(|l| l.starts_with('"')) {
                            Some(l) => out.push(Reference::Include(l.trim_matches('"').into())),
                            None => out.push(Reference::Include(String::new())),
                        }
                        i += 3;
                        continue;
                    }
                }
                if name == "template"
                    && matches!(tokens.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                {
                    out.push(Reference::Templates);
                }
                if name == "mod" {
                    if let Some(TokenTree::Ident(child)) = tokens.get(i + 1) {
                        match tokens.get(i + 2) {
                            Some(TokenTree::Punct(p)) if p.as_char() == ';' => {
                                out.push(Reference::ChildModule(child.to_string()));
                            }
                            // Unit tests (`mod tests { … }`) cannot change outputs.
                            Some(TokenTree::Group(_)) if child == "tests" => {
                                i += 3;
                                continue;
                            }
                            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                                let mut inner = module.to_vec();
                                inner.push(child.to_string());
                                scan(g.stream(), &inner, out);
                                i += 3;
                                continue;
                            }
                            _ => {}
                        }
                    }
                }
                if !after_sep && !after_dot {
                    i = path_at(&tokens, i, Vec::new(), module, out);
                    continue;
                }
            }
            TokenTree::Group(g) => scan(g.stream(), module, out),
            _ => {}
        }
        i += 1;
    }
}

/// Read the path starting at `tokens[i]` (an identifier), with `prefix` from an enclosing
/// `use` tree; record it (each branch of a `{…}` tree separately). Returns the index after it.
fn path_at(
    tokens: &[TokenTree],
    mut i: usize,
    mut segments: Vec<String>,
    module: &[String],
    out: &mut Vec<Reference>,
) -> usize {
    while let Some(TokenTree::Ident(id)) = tokens.get(i) {
        segments.push(id.to_string());
        if !is_path_sep(tokens, i + 1) {
            out.push(Reference::Path(module.to_vec(), segments));
            return i + 1;
        }
        i += 3;
        if let Some(TokenTree::Group(g)) = tokens.get(i) {
            if g.delimiter() == Delimiter::Brace {
                out.push(Reference::Path(module.to_vec(), segments.clone()));
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let mut j = 0;
                while j < inner.len() {
                    if matches!(&inner[j], TokenTree::Ident(_)) {
                        j = path_at(&inner, j, segments.clone(), module, out);
                    } else {
                        if let TokenTree::Group(g) = &inner[j] {
                            scan(g.stream(), module, out);
                        }
                        j += 1;
                    }
                }
                return i + 1;
            }
        }
    }
    // `a::*` or `a::<T>`: what was read so far.
    if !segments.is_empty() {
        out.push(Reference::Path(module.to_vec(), segments));
    }
    i
}

/// The deepest module file of package `pkg` that `module` names (the crate root if none).
fn module_file(base: &Path, pkg: usize, module: &[String]) -> String {
    let src = PACKAGES[pkg].2;
    for k in (1..=module.len()).rev() {
        let stem = module[..k].join("/");
        for candidate in [format!("{src}/{stem}.rs"), format!("{src}/{stem}/mod.rs")] {
            if base.join(&candidate).is_file() {
                return candidate;
            }
        }
    }
    let lib = format!("{src}/lib.rs");
    if base.join(&lib).is_file() {
        lib
    } else {
        format!("{src}/main.rs")
    }
}

/// The direct dependencies (package names) of each workspace package, from Cargo.lock.
pub struct Lock {
    packages: Vec<(String, String, Vec<String>)>, // name, version, dependency specs
}

impl Lock {
    pub fn read(path: &Path) -> Result<Lock, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: toml::Value =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut packages = Vec::new();
        for p in doc.get("package").and_then(|p| p.as_array()).into_iter().flatten() {
            let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let deps = p.get("dependencies").and_then(|d| d.as_array());
            let deps = deps.into_iter().flatten().filter_map(|d| d.as_str().map(str::to_string));
            packages.push((field("name"), field("version"), deps.collect()));
        }
        Ok(Lock { packages })
    }

    fn find(&self, spec: &str) -> Option<usize> {
        let mut parts = spec.split(' ');
        let (name, version) = (parts.next()?, parts.next());
        self.packages.iter().position(|(n, v, _)| n == name && version.is_none_or(|w| w == v))
    }

    /// The package `ident` (as written in paths) names among `user`'s direct dependencies.
    pub fn dependency_of(&self, user: &str, ident: &str) -> Option<usize> {
        let user = self.find(user)?;
        let spec = self.packages[user].2.iter().find(|d| {
            d.split(' ').next().is_some_and(|n| n.replace('-', "_") == ident)
        })?;
        self.find(spec)
    }

    /// `name version` of `package`.
    pub fn describe(&self, package: usize) -> String {
        format!("{} {}", self.packages[package].0, self.packages[package].1)
    }

    /// `package` and everything it depends on, as sorted `name version` strings.
    pub fn closure(&self, package: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![package];
        while let Some(p) = todo.pop() {
            if seen.insert(self.describe(p)) {
                todo.extend(self.packages[p].2.iter().filter_map(|d| self.find(d)));
            }
        }
        seen
    }
}

/// Every file and crate reachable from `roots` (followed) and `leaves` (hashed as they are;
/// the torch helper's main.rs dispatches to every torch kind, so following it would make
/// train depend on evaluate's code). Paths are relative to `base` (the stages/ directory).
pub fn reach(base: &Path, lock: &Lock, roots: &[&str], leaves: &[&str]) -> Result<Reach, String> {
    let mut reach = Reach::default();
    let mut todo: Vec<(String, bool)> = roots.iter().map(|r| (r.to_string(), true)).collect();
    todo.extend(leaves.iter().map(|l| (l.to_string(), false)));
    while let Some((file, follow)) = todo.pop() {
        let path = base.join(&file);
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                let rel = e.strip_prefix(base).map_err(|e| e.to_string())?;
                todo.push((normalise(rel), follow));
            }
            continue;
        }
        if !path.is_file() {
            return Err(format!("{file}: no such file (named in stages/versions.rs or reached from it)"));
        }
        if !reach.files.insert(file.clone()) || !follow || !file.ends_with(".rs") {
            continue;
        }
        let Some((pkg, module, is_root)) = locate(&file) else {
            return Err(format!("{file}: not in a workspace package's src/"));
        };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
        let tokens: TokenStream = text.parse().map_err(|e| format!("{file}: {e:?}"))?;
        let mut refs = Vec::new();
        scan(tokens, &module, &mut refs);
        let children: BTreeSet<String> = refs
            .iter()
            .filter_map(|r| match r {
                Reference::ChildModule(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let dir = Path::new(&file).parent().unwrap_or(Path::new("")).to_path_buf();
        for r in refs {
            match r {
                Reference::Include(lit) if lit.is_empty() => {
                    return Err(format!("{file}: an include_* of something other than a string literal; wormflow cannot version it"));
                }
                Reference::Include(lit) => todo.push((normalise(&dir.join(lit)), false)),
                Reference::Templates => todo.push(("templates".into(), false)),
                Reference::ChildModule(c) if !is_root => {
                    let mut child = module.clone();
                    child.push(c);
                    todo.push((module_file(base, pkg, &child), true));
                }
                Reference::ChildModule(_) => {}
                Reference::Path(scope, segments) => {
                    let first = segments[0].as_str();
                    let rest = segments[1..].to_vec();
                    let target = match first {
                        "crate" => Some((pkg, rest)),
                        "self" => Some((pkg, [scope, rest].concat())),
                        "super" => {
                            let ups = segments.iter().take_while(|s| *s == "super").count();
                            let keep = scope.len().saturating_sub(ups);
                            Some((pkg, [scope[..keep].to_vec(), segments[ups..].to_vec()].concat()))
                        }
                        _ => {
                            if let Some(other) = PACKAGES.iter().position(|p| p.0 == first) {
                                Some((other, rest))
                            } else if children.contains(first) && scope == module {
                                Some((pkg, [module.clone(), segments.clone()].concat()))
                            } else {
                                if lock.dependency_of(PACKAGES[pkg].1, first).is_some() {
                                    reach.crates.insert((PACKAGES[pkg].1.into(), first.into()));
                                }
                                None
                            }
                        }
                    };
                    if let Some((target_pkg, module_path)) = target {
                        todo.push((module_file(base, target_pkg, &module_path), true));
                    }
                }
            }
        }
    }
    Ok(reach)
}

/// What enters one kind's version: per file its content hash, per crate it uses its
/// locked version and the hash of its locked dependency tree (so `explain` can name what
/// changed), and the version itself: the hash of all of it.
pub fn manifest(base: &Path, lock: &Lock, reach: &Reach) -> Result<BTreeMap<String, String>, String> {
    let mut entries = BTreeMap::new();
    for file in &reach.files {
        let bytes =
            std::fs::read(base.join(file)).map_err(|e| format!("cannot read {file}: {e}"))?;
        entries.insert(file.clone(), blake3::hash(&bytes).to_hex()[..12].to_string());
    }
    for (user, ident) in &reach.crates {
        let package = lock.dependency_of(user, ident).expect("found while reaching");
        let mut tree = blake3::Hasher::new();
        for p in lock.closure(package) {
            tree.update(p.as_bytes());
            tree.update(b"\n");
        }
        let described = lock.describe(package);
        let (name, version) = described.split_once(' ').unwrap_or((&described, ""));
        entries.insert(
            format!("crate {name}"),
            format!("{version} (with dependencies {})", &tree.finalize().to_hex()[..8]),
        );
    }
    Ok(entries)
}

/// The version string of a kind from its manifest: `<kind>-<16 hex>`.
pub fn version_of(kind: &str, manifest: &BTreeMap<String, String>) -> String {
    let mut h = blake3::Hasher::new();
    for (k, v) in manifest {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    format!("{kind}-{}", &h.finalize().to_hex()[..16])
}
