//! Paths that come from outside — a record, a remote, an archive entry, a DANDI asset
//! listing — must stay inside the directory they are laid out in. Engine and stages check
//! them with this one rule, so no surface is laxer than another.

/// Relative, `/`-separated, no `..`, no empty or `.` parts, no NUL; `Err` says which rule
/// it breaks (to follow "path … ").
pub fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    if path.starts_with('/') {
        return Err("is absolute");
    }
    if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err("has an empty, `.` or `..` part");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_paths_inside() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\0b", "a/"] {
            assert!(super::check_relative_path(bad).is_err(), "{bad:?}");
        }
        assert!(super::check_relative_path("sub-1/x.nwb").is_ok());
    }
}
