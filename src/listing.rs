//! Lists of names for people to read.

/// The first `keep` names, then how many more (a gather can wait on hundreds of nodes).
pub fn abbreviated(names: &[String], keep: usize) -> String {
    if names.len() <= keep + 1 {
        return names.join(", ");
    }
    format!("{} and {} more", names[..keep].join(", "), names.len() - keep)
}
