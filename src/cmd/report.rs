//! `report`: where the pipeline's report is, and opening it.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::status::Resolver;
use crate::store::Store;
use crate::workspace::Planned;

pub(super) fn report_cmd(p: &Planned, open: bool) -> Result<ExitCode> {
    let store = Store::open_existing(&p.store_root);
    let resolver = Resolver::new(&p.graph, &store, &p.workspace);
    let states = resolver.states(None);
    let mut found = Vec::new();
    for (i, node) in p.graph.nodes.iter().enumerate() {
        let Some((action, fresh)) = resolver.current_or_latest(i, states[i].as_ref()) else {
            continue;
        };
        if action.outputs.iter().any(|o| o.path == "report.html") {
            let path = crate::results::dir_of(&p.workspace, node).join("report.html");
            println!(
                "{}{}",
                path.display(),
                if fresh { "" } else { "  (stale: `wormflow run` brings it up to date)" }
            );
            found.push(path);
        }
    }
    if found.is_empty() {
        bail!("no report yet: add a stage of kind \"report\" and run `wormflow run`");
    }
    if open {
        open_in_browser(&found[0])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Open `path` with `$BROWSER` (a command, as in Python's `webbrowser`) or else `xdg-open`;
/// an error unless the opener ran and said it succeeded.
fn open_in_browser(path: &std::path::Path) -> Result<()> {
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let (program, args): (String, Vec<String>) = match &browser {
        Some(b) => {
            let mut words = b.split_whitespace().map(str::to_string);
            (words.next().unwrap_or_default(), words.collect())
        }
        None => ("xdg-open".into(), Vec::new()),
    };
    let status = std::process::Command::new(&program).args(&args).arg(path).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("could not open {} in a browser: `{program}` exited with {s}; set $BROWSER to a browser command, or open the file above yourself", path.display()),
        Err(e) => bail!("could not open {} in a browser: cannot run `{program}` ({e}); set $BROWSER to a browser command, or open the file above yourself", path.display()),
    }
}
