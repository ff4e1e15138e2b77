//! Log output: `LOGDIR/xcauth.log` (everything) and `LOGDIR/xcauth.err`
//! (warnings and errors), re-opened on SIGHUP and when logrotate moved them
//! away; or standard error with `-i`; or, when standard error is systemd's
//! journal ([`stderr_is_journal`]), standard error with the journal's
//! priority prefixes (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug;
//! sd-daemon(3)) and no timestamps, the journal adds its own (the files
//! too only with `log-files-under-journal`). Never standard output, which
//! belongs to the protocol.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use unicode_general_category::{get_general_category, GeneralCategory};

/// How often a log file's path is checked for having been rotated away.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// Counts SIGHUPs; a log file whose own count is behind re-opens before its
/// next write.
static REOPEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks all log files to re-open their paths before the next line
/// (called from the SIGHUP handler).
pub fn request_reopen() {
    REOPEN_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Where log lines go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Standard error (`-i`).
    Stderr,
    /// `DIR/xcauth.log` and `DIR/xcauth.err`.
    Dir(PathBuf),
    /// Standard error is systemd's journal: lines with priority prefixes
    /// and without timestamps; with `files`, also `DIR/xcauth.log` and
    /// `DIR/xcauth.err` as for [`Target::Dir`].
    Journal {
        /// The log directory to write as well (`log-files-under-journal`).
        files: Option<PathBuf>,
    },
}

/// The variable systemd sets to `DEVICE:INODE` of the stream it connected
/// to standard output and error (systemd.exec(5)).
pub const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";

/// True when `journal_stream` (the value of [`JOURNAL_STREAM_ENV`]) names
/// the file standard error is: its device and inode match, as
/// sd_journal_stream_fd's readers are told to check. An inherited variable
/// with standard error redirected elsewhere (a child of a service, a shell
/// in `systemd-run`, a test) does not match.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::fd::AsRawFd;
    let Some((dev, ino)) = journal_stream.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // dev_t and ino_t are narrower than u64 on some targets.
    #[allow(clippy::useless_conversion)]
    match nix::sys::stat::fstat(io::stderr().as_raw_fd()) {
        Ok(stat) => u64::from(stat.st_dev) == dev && u64::from(stat.st_ino) == ino,
        Err(_) => false,
    }
}

/// The syslog priority of a level, as the journal reads it from a `<N>`
/// line prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<N>message`: the journal's stream format (sd-daemon(3)).
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Lines queued for the writer thread before a logging call waits. The
/// library default (128 000) allocates and touches several megabytes up
/// front; a few thousand absorb any burst we produce.
const QUEUED_LINES: usize = 4096;

/// Writes on a background thread so a slow disk never delays an answer;
/// nothing is dropped (a full queue makes the logging call wait).
fn background<W: Write + Send + 'static>(writer: W) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(false)
        .finish(writer)
}

/// Keeps the background log writers alive; dropping it flushes them.
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

/// Installs the global logger. `debug` enables debug-level lines.
pub fn init(target: &Target, debug: bool) -> io::Result<LogGuard> {
    let ours = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    // Our own lines at the chosen level; the libraries' only when they warn
    // (their debug output is noise for an administrator).
    let level = Targets::new()
        .with_target("xcauth", ours)
        .with_default(LevelFilter::WARN);
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let mut guards = Vec::new();
    let dir = match target {
        Target::Stderr => {
            let (writer, guard) = background(io::stderr());
            guards.push(guard);
            layers.push(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(false)
                    .with_filter(level.clone())
                    .boxed(),
            );
            None
        }
        Target::Journal { files } => {
            let (writer, guard) = background(io::stderr());
            guards.push(guard);
            layers.push(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .event_format(JournalFormat)
                    .with_filter(level.clone())
                    .boxed(),
            );
            files.as_ref()
        }
        Target::Dir(dir) => Some(dir),
    };
    if let Some(dir) = dir {
        let log = ReopeningFile::open(dir.join("xcauth.log"))?;
        let err = ReopeningFile::open(dir.join("xcauth.err"))?;
        let (log_writer, log_guard) = background(log);
        let (err_writer, err_guard) = background(err);
        guards.extend([log_guard, err_guard]);
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(log_writer)
                .with_target(false)
                .with_ansi(false)
                .with_filter(level.clone())
                .boxed(),
        );
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(err_writer.with_max_level(Level::WARN))
                .with_target(false)
                .with_ansi(false)
                .with_filter(level.clone())
                .boxed(),
        );
    }
    // A second init (tests calling twice) is not an error worth dying for.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(LogGuard { _guards: guards })
}

/// An append-only file that re-opens its path after SIGHUP or when the
/// file at the path is no longer the one it has open (rotated away).
#[derive(Clone)]
pub struct ReopeningFile {
    inner: Arc<Mutex<OpenLog>>,
}

struct OpenLog {
    path: PathBuf,
    file: File,
    inode: (u64, u64),
    checked: Instant,
    every: Duration,
    generation: u64,
}

fn open_append(path: &Path) -> io::Result<(File, (u64, u64))> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

impl ReopeningFile {
    /// Opens (creating) `path` for appending.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        Self::open_checking_every(path, ROTATION_CHECK)
    }

    /// Like [`ReopeningFile::open`], looking for rotation at most once per
    /// `every`.
    pub fn open_checking_every(path: PathBuf, every: Duration) -> io::Result<Self> {
        let (file, inode) = open_append(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(ReopeningFile {
            inner: Arc::new(Mutex::new(OpenLog {
                path,
                file,
                inode,
                checked: Instant::now(),
                every,
                generation: REOPEN_GENERATION.load(Ordering::SeqCst),
            })),
        })
    }
}

impl OpenLog {
    fn reopen_if_needed(&mut self) {
        let generation = REOPEN_GENERATION.load(Ordering::SeqCst);
        let hup = generation != self.generation;
        self.generation = generation;
        let due = self.checked.elapsed() >= self.every;
        if !hup && !due {
            return;
        }
        self.checked = Instant::now();
        let moved = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != self.inode,
            Err(_) => true,
        };
        if hup || moved {
            // If the directory is gone or unwritable we keep the old file
            // rather than lose lines.
            if let Ok((file, inode)) = open_append(&self.path) {
                self.file = file;
                self.inode = inode;
            }
        }
    }
}

impl Write for ReopeningFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut log = self
            .inner
            .lock()
            .map_err(|_| io::Error::other("log file lock poisoned"))?;
        log.reopen_if_needed();
        log.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.inner.lock() {
            Ok(mut log) => log.file.flush(),
            Err(_) => Ok(()),
        }
    }
}

/// Client-chosen text made safe for one log line: control characters (a
/// `\n` would start a forged line), the Unicode line and paragraph
/// separators, format characters (invisible ones such as U+200B and the
/// bidi controls such as U+202E, which would hide or reorder what a
/// reader sees) and the backslash itself are written as Rust escapes
/// (`\n`, `\u{2028}`, `\u{202e}`, `\\`); everything else as it is. Every value a
/// client chose that reaches a log line goes through this.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\\')
                || get_general_category(c) == GeneralCategory::Format
            {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// [`Escaped`] for bytes that may not be UTF-8 (a garbage line): invalid
/// sequences become U+FFFD before escaping.
pub fn escaped_bytes(bytes: &[u8]) -> String {
    Escaped(&String::from_utf8_lossy(bytes)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_priorities_are_sd_daemons() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
    }

    #[test]
    fn a_journal_stream_that_is_not_standard_error_does_not_count() {
        use std::os::fd::AsRawFd;
        assert!(!stderr_is_journal(None));
        for bad in ["", "12", "a:b", "1:", ":2", "1:2:3"] {
            assert!(!stderr_is_journal(Some(bad)), "{bad:?}");
        }
        // Whatever the test's standard error is, a value one inode off
        // does not match it, and its own device and inode do.
        let stat = nix::sys::stat::fstat(io::stderr().as_raw_fd()).expect("fstat");
        #[allow(clippy::useless_conversion)]
        let (dev, ino) = (u64::from(stat.st_dev), u64::from(stat.st_ino));
        assert!(stderr_is_journal(Some(&format!("{dev}:{ino}"))));
        assert!(!stderr_is_journal(Some(&format!("{dev}:{}", ino + 1))));
    }

    #[test]
    fn escaped_text_stays_on_one_line() {
        let forged =
            "bob\n2026-01-01T00:00:00Z  WARN guard: refused address 10.0.0.1\r\u{2028}\x1b[1m\\";
        let shown = Escaped(forged).to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{shown}"
        );
        assert_eq!(
            shown,
            "bob\\n2026-01-01T00:00:00Z  WARN guard: refused address 10.0.0.1\\r\\u{2028}\\u{1b}[1m\\\\"
        );
        assert_eq!(
            Escaped("alice@example.org é").to_string(),
            "alice@example.org é"
        );
        assert_eq!(escaped_bytes(b"a\xffb\n"), "a\u{fffd}b\\n");
    }

    #[test]
    fn invisible_and_bidi_characters_are_shown_escaped() {
        assert_eq!(
            Escaped("example.org\u{200B} \u{202E}gro\u{00AD}\u{FEFF}").to_string(),
            "example.org\\u{200b} \\u{202e}gro\\u{ad}\\u{feff}"
        );
    }

    #[test]
    fn a_rotated_file_is_reopened_at_its_path() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("xcauth.log");
        let mut log =
            ReopeningFile::open_checking_every(path.clone(), Duration::ZERO).expect("open");
        log.write_all(b"before\n").expect("write");
        std::fs::rename(&path, dir.path().join("xcauth.log.1")).expect("rotate");
        log.write_all(b"after\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("new file"), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("xcauth.log.1")).expect("old"),
            "before\n"
        );
    }

    #[test]
    fn sighup_reopens_before_the_rotation_check_is_due() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("xcauth.log");
        // A long check interval: only the SIGHUP request makes it re-open.
        let mut log = ReopeningFile::open_checking_every(path.clone(), Duration::from_secs(3600))
            .expect("open");
        log.write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("old.log")).expect("rotate");
        log.write_all(b"two\n").expect("write");
        assert!(!path.exists(), "not re-opened before the signal");
        request_reopen();
        log.write_all(b"three\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("new file"), "three\n");
    }
}
