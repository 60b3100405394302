//! The science of wormflow. Stage kinds are added by the data, training and analysis work.
//! Each kind is registered with the engine by the binary through `register_all`.

/// Hand every stage kind of this crate to `register`.
pub fn register_all<K>(_register: &mut dyn FnMut(K)) {}
