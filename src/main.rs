use std::process::ExitCode;
use std::sync::Arc;

use wormflow::kinds::Registry;

fn main() -> ExitCode {
    let mut registry = Registry::new();
    registry.register(Arc::new(wormflow::exec::command::CommandKind));
    wormflow_stages::register_all(&mut |kind| registry.register(kind));
    wormflow::cmd::main(registry)
}
