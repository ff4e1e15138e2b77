//! ejabberdctl as the administration commands run it: to completion, from synchronous code, reporting each call.
//!
//! This is the administration commands' own small wrapper around the
//! server's runner ([`crate::roster::Ejabberdctl`]); it is kept apart here
//! so that it can give way to a shared one.

use std::io;
use std::sync::Arc;

use super::report::{shown, Report};
use crate::roster::Ejabberdctl;

/// ejabberdctl, run to completion from this synchronous code.
pub(super) struct Ctl {
    ctl: Arc<dyn Ejabberdctl>,
    runtime: tokio::runtime::Runtime,
}

impl Ctl {
    pub(super) fn new(ctl: Arc<dyn Ejabberdctl>) -> io::Result<Ctl> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Ctl { ctl, runtime })
    }

    /// Runs `ejabberdctl ARGS`, reports it, and says whether it worked. A
    /// failure is reported with the command to run by hand.
    pub(super) fn call(&self, report: &mut Report, args: &[&str]) -> bool {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let words = shell_words(&args);
        match self.runtime.block_on(self.ctl.run(&args)) {
            Ok(_) => {
                report.line(format!("ejabberdctl {words}: done"));
                true
            }
            Err(e) => {
                report.note(format!(
                    "ejabberdctl {words} failed: {e}; run it by hand once ejabberd is up"
                ));
                false
            }
        }
    }
}

/// The arguments as one would type them in a shell, for messages only
/// (nothing here is ever run through a shell).
pub(super) fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_alphanumeric() || "@%_+-.,:/=".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", shown(a).replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::strings;

    #[test]
    fn commands_are_shown_as_typed_in_a_shell() {
        assert_eq!(
            shell_words(&strings(&["srg_delete", "it's", "", "zoë@x.org"])),
            r"srg_delete 'it'\''s' '' zoë@x.org"
        );
    }
}
