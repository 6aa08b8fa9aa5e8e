//! Everything the CLI prints on stdout goes through [`outln!`] and [`out!`], which return the
//! write's error instead of panicking as `println!` does: `countersign --json list | head` closes
//! stdout early, and the command then ends quietly (`main` treats a broken pipe as done).

use std::io::Write;

/// Writes `args` and a newline to stdout.
pub fn write_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `args` to stdout.
pub fn write(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.flush()
}

/// Whether `e` is stdout closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns its error from the enclosing function.
macro_rules! outln {
    () => {
        $crate::out::write_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::out::write_line(format_args!($($arg)*))?
    };
}

/// `print!` that returns its error from the enclosing function.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))?
    };
}

pub(crate) use {out, outln};
