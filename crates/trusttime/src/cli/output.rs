//! The one output layer of the CLI: every command prints through [`outln!`](crate::outln),
//! [`out!`](crate::out) and [`errln!`](crate::errln), never `println!`/`eprintln!` (which panic
//! when the stream is closed or full).
//!
//! - stdout closed by the reader (`trusttime sources | head -1`, `| grep -q`): the command ends
//!   at once with exit status 141 (128 + SIGPIPE), as `cat` or `git log` killed by SIGPIPE
//!   would; no panic, no message.
//! - stdout full or failing otherwise (`> /dev/full`): one line on stderr, exit status 1.
//! - stderr closed or full: the message is dropped; the command goes on (there is nowhere
//!   left to complain to).
//!
//! Logging (`tracing`) goes to stderr through [`LogWriter`], which also never fails the
//! process: see [`init_logging`].

use std::fmt;
use std::io::{self, IsTerminal, Write};

/// Exit status when the reader of stdout went away: 128 + SIGPIPE, as shells report a tool
/// killed by SIGPIPE.
pub const EXIT_CLOSED: u8 = 141;

/// Writes to stdout; ends the process when stdout is gone (see the module doc).
pub fn write_out(args: fmt::Arguments<'_>) {
    let mut o = io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        stdout_failed(&e);
    }
}

/// Writes to stderr; a closed or full stderr is ignored.
pub fn write_err(args: fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.flush());
}

fn stdout_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(EXIT_CLOSED));
    }
    write_err(format_args!(
        "error: cannot write to standard output: {e}\n"
    ));
    std::process::exit(i32::from(super::EXIT_FAIL));
}

/// `println!` for commands: see [`crate::cli::output`].
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::output::write_out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::output::write_out(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` for commands: see [`crate::cli::output`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::output::write_out(format_args!($($t)*)) };
}

/// `eprintln!` that never panics: see [`crate::cli::output`].
#[macro_export]
macro_rules! errln {
    () => { $crate::cli::output::write_err(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::output::write_err(format_args!("{}\n", format_args!($($t)*))) };
}

/// `eprint!` that never panics: see [`crate::cli::output`].
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::cli::output::write_err(format_args!($($t)*)) };
}

/// stderr for `tracing`: a failed write (closed pipe, `/dev/full`, a journal that went away)
/// is reported to the logger as written, so a log line can never abort or stall the daemon.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Whether log lines get ANSI colours: only on a terminal, and never with `NO_COLOR` set
/// (no-color.org), so files and the journal get plain text.
#[must_use]
pub fn log_colours() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
}

/// Logs go to stderr (so `--json` on stdout stays clean), through [`LogWriter`], with
/// colours only on a terminal, and the logger's own "cannot write" complaints (which would
/// panic on a broken stderr) turned off.
pub fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|_| EnvFilter::new("warn")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(log_colours())
        .log_internal_errors(false)
        .try_init();
}

/// Makes sure file descriptors 0, 1 and 2 are open (on `/dev/null` when they were closed),
/// so a file or socket opened later can never land on fd 1 or 2 and receive output or log
/// lines meant for a terminal (`trusttime daemon 2>&-`).
pub fn ensure_standard_fds() {
    use std::os::fd::{AsRawFd, IntoRawFd};
    for _ in 0..3 {
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        else {
            return;
        };
        if f.as_raw_fd() > 2 {
            return; // 0, 1 and 2 are taken; this one is closed on drop.
        }
        // It filled a closed standard descriptor: keep it open for the process's life.
        let _ = f.into_raw_fd();
    }
}
