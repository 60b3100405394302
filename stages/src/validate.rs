//! Small checks shared by the kinds' parameter validation.

/// `x > 0` and not NaN. Parameter checks use it so that a NaN read from a config is refused
/// (`x > 0.0` is false for NaN; negating `x <= 0.0` would let NaN through).
pub fn is_positive(x: f64) -> bool {
    x > 0.0
}
