//! Running ejabberdctl: an argument vector, never a shell, with a time
//! limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::ENV_PREFIX;

/// Default limit for one ejabberdctl run. A healthy one takes about a
/// second (it starts an Erlang node); ejabberdctl's own RPC timeout is 60 s.
pub const DEFAULT_CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Most characters of ejabberdctl's complaint kept in a [`CtlError`].
const COMPLAINT_LIMIT: usize = 400;

/// Why one ejabberdctl run failed. The sync logs it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// The program could not be started (missing, not executable).
    #[error("cannot run {0}")]
    Spawn(String),
    /// It ran longer than the limit and was killed.
    #[error("no answer within {0:?}; killed")]
    Timeout(Duration),
    /// It exited unsuccessfully; `output` is the start of its complaint
    /// (stderr, or stdout where ejabberdctl prints its errors).
    #[error("exit status {}: {output}", status_text(*.status))]
    Failed {
        /// Exit code; `None` when a signal ended it.
        status: Option<i32>,
        /// Start of the complaint, at most a few hundred characters.
        output: String,
    },
}

fn status_text(status: Option<i32>) -> String {
    status.map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string())
}

/// Runs ejabberdctl commands. The real one is [`CommandCtl`]; tests swap in
/// recording fakes.
#[async_trait]
pub trait Ejabberdctl: Send + Sync {
    /// Runs `ejabberdctl ARGS...` and returns its standard output.
    async fn run(&self, args: &[String]) -> Result<String, CtlError>;
}

/// The ejabberdctl program (or a wrapper such as `xcejabberdctl`), run with
/// an argument vector, never through a shell.
#[derive(Debug, Clone)]
pub struct CommandCtl {
    path: PathBuf,
    timeout: Duration,
}

impl CommandCtl {
    /// The program at `path`, with [`DEFAULT_CTL_TIMEOUT`].
    pub fn new(path: impl Into<PathBuf>) -> CommandCtl {
        CommandCtl {
            path: path.into(),
            timeout: DEFAULT_CTL_TIMEOUT,
        }
    }

    /// Sets the limit for one run; a run still going then is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> CommandCtl {
        self.timeout = timeout;
        self
    }

    /// The program run.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Ejabberdctl for CommandCtl {
    async fn run(&self, args: &[String]) -> Result<String, CtlError> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // ejabberdctl decodes its arguments in the locale's charset: under
        // C/POSIX "jürgen" would reach ejabberd as "jÃ¼rgen", and still exit
        // 0. Our arguments are UTF-8, so say so.
        cmd.env("LC_ALL", "C.UTF-8");
        // Our own settings (XCAUTH_SECRET above all) are none of its business.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(ENV_PREFIX) {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| CtlError::Spawn(format!("{}: {e}", self.path.display())))?;
        // On timeout the future, and with it the child, is dropped, and
        // kill_on_drop kills it (its own children finish on their own).
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| CtlError::Timeout(self.timeout))?
            .map_err(|e| CtlError::Spawn(format!("{}: {e}", self.path.display())))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let complaint = if output.stderr.iter().all(u8::is_ascii_whitespace) {
            &output.stdout
        } else {
            &output.stderr
        };
        Err(CtlError::Failed {
            status: output.status.code(),
            output: excerpt(complaint),
        })
    }
}

/// The start of a complaint: lossy UTF-8, trimmed, at most
/// [`COMPLAINT_LIMIT`] characters.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(COMPLAINT_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
