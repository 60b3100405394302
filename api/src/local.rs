//! Local sources named by a directory or a glob (`mydata/`, `mydata/*.h5`,
//! `runs/**/worm?.nwb`): the one expansion both sides use, so the files a `download` node
//! copies are exactly the files the engine hashed into its key.
//!
//! A pattern without glob characters names one file or a directory (all files under it,
//! recursively). With glob characters (`*` within one path component, `**` across them,
//! `?`, `[…]`, `{a,b}`), the files under its literal leading directories whose path matches.
//! Hidden files and directories (`.DS_Store`, `.git/`) are skipped. Each file is returned
//! with its path relative to the workspace and relative to the pattern's base directory
//! (where it lands in the output).

use std::path::{Path, PathBuf};

/// One file a local pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Relative to the workspace, `/`-separated (as written in the key).
    pub path: String,
    /// Relative to the pattern's base directory (its place in the output).
    pub rel: String,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// True when `pattern` names more than one file: a glob, or an existing directory.
pub fn is_multi(workspace: &Path, pattern: &str) -> bool {
    has_glob(pattern) || workspace.join(pattern).is_dir()
}

/// What a non-regular file is, in words (None for a regular file). wormflow never opens
/// such a file: reading a FIFO blocks until a writer comes, a device may never end.
pub fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// A file's name as text, or an error naming its bytes: file names are recorded in keys
/// and outputs as UTF-8, and a lossy conversion would name a file that does not exist.
fn utf8_name(path: &Path) -> Result<&str, String> {
    path.to_str().ok_or_else(|| {
        format!(
            "{}: the file name is not valid UTF-8; rename it (wormflow records file names as text)",
            path.to_string_lossy()
        )
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let listing = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(listing)?.collect::<Result<_, _>>().map_err(listing)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = e.path();
        utf8_name(&path)?;
        // Follows links, as reading the file would; a dangling link is an error here.
        let meta = std::fs::metadata(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if let Some(what) = not_regular(&meta) {
            return Err(format!(
                "{} is {what}, not a regular file; wormflow reads only regular files (it was not opened): move it out of the folder, or name the files you mean with a glob",
                path.display()
            ));
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn slash(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The files `pattern` (relative to `workspace`) names, sorted by path. An error says what
/// is wrong in words a user can act on; no match is an error.
pub fn expand(workspace: &Path, pattern: &str) -> Result<Vec<LocalFile>, String> {
    let pattern = pattern.strip_prefix("file://").unwrap_or(pattern);
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let (base, matcher) = if has_glob(pattern) {
        let parts: Vec<&str> = pattern.split('/').collect();
        let literal = parts.iter().take_while(|p| !has_glob(p)).count();
        let base = parts[..literal].join("/");
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{pattern:?} is not a valid glob: {}", e.kind()))?
            .compile_matcher();
        (base, Some(glob))
    } else {
        (pattern.trim_end_matches('/').to_string(), None)
    };
    let root = workspace.join(&base);
    let mut found = Vec::new();
    let root_meta = std::fs::metadata(&root);
    if matcher.is_none() && root_meta.as_ref().is_ok_and(|m| m.is_file()) {
        found.push(root.clone());
    } else if root_meta.as_ref().is_ok_and(|m| m.is_dir()) {
        walk(&root, &mut found)?;
    } else if let Some(what) = root_meta.as_ref().ok().and_then(not_regular) {
        return Err(format!(
            "{pattern:?}: {} is {what}, not a regular file; wormflow reads only regular files (it was not opened)",
            root.display()
        ));
    } else {
        return Err(format!(
            "{pattern:?}: no such file or directory {} (paths are relative to the pipeline's directory)",
            root.display()
        ));
    }
    let mut out = Vec::new();
    for f in found {
        let path = slash(f.strip_prefix(workspace).unwrap_or(&f));
        if matcher.as_ref().is_some_and(|m| !m.is_match(&path)) {
            continue;
        }
        let rel = if f == root {
            f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        } else {
            slash(f.strip_prefix(&root).unwrap_or(&f))
        };
        out.push(LocalFile { path, rel });
    }
    if out.is_empty() {
        return Err(format!("{pattern:?} matches no file under {}", root.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_globs() {
        let ws = std::env::temp_dir().join(format!("wormflow-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        for f in ["d/a.h5", "d/b.h5", "d/notes.txt", "d/sub/c.h5", "d/.DS_Store", "one.h5"] {
            let p = ws.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        let paths = |pat: &str| -> Vec<(String, String)> {
            expand(&ws, pat).unwrap().into_iter().map(|f| (f.path, f.rel)).collect()
        };
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(paths("one.h5"), vec![p("one.h5", "one.h5")]);
        assert_eq!(
            paths("d/"),
            vec![
                p("d/a.h5", "a.h5"),
                p("d/b.h5", "b.h5"),
                p("d/notes.txt", "notes.txt"),
                p("d/sub/c.h5", "sub/c.h5")
            ]
        );
        assert_eq!(paths("d/*.h5"), vec![p("d/a.h5", "a.h5"), p("d/b.h5", "b.h5")]);
        assert_eq!(paths("d/**/*.h5").len(), 3);
        assert!(expand(&ws, "d/*.nwb").unwrap_err().contains("matches no file"));
        assert!(expand(&ws, "nope/").unwrap_err().contains("no such file"));
        assert!(is_multi(&ws, "d") && is_multi(&ws, "x/*.h5") && !is_multi(&ws, "one.h5"));
        std::fs::remove_dir_all(&ws).unwrap();
    }

    #[test]
    fn special_files_and_odd_names_are_refused_unopened() {
        use std::os::unix::ffi::OsStrExt;
        let ws = std::env::temp_dir().join(format!("wormflow-local-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("d")).unwrap();
        std::fs::write(ws.join("d/a.h5"), "a").unwrap();
        let fifo = std::ffi::CString::new(ws.join("d/pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // Opening the FIFO would block this test for ever.
        let e = expand(&ws, "d/").unwrap_err();
        assert!(e.contains("pipe is a FIFO") && e.contains("not a regular file"), "{e}");
        let e = expand(&ws, "d/pipe").unwrap_err();
        assert!(e.contains("FIFO"), "{e}");
        std::fs::remove_file(ws.join("d/pipe")).unwrap();
        let odd = ws.join("d").join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
        std::fs::write(&odd, "x").unwrap();
        let e = expand(&ws, "d/").unwrap_err();
        assert!(e.contains("not valid UTF-8") && e.contains("caf"), "{e}");
        std::fs::remove_dir_all(&ws).unwrap();
    }
}
