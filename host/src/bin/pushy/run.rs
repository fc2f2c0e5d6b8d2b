//! `pushy run` and `pushy eval`: a script or an expression in a fresh session.

use std::process::ExitCode;

use pushy::{Connection, Error};

use crate::cli::{EvalArgs, RunArgs};
use crate::{EXIT_USAGE, connect, connect_with_input, report, usage};

pub(crate) async fn run(args: RunArgs) -> ExitCode {
    let (script, script_args) = match args.command.split_first() {
        Some(split) => split,
        None => return usage("run needs a SCRIPT"),
    };
    let source = match std::fs::read(script) {
        Ok(source) => source,
        Err(error) => {
            errln!("pushy: can't open file '{script}': {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let con = match connect_with_input(&args.target, &args.limits, pushy::InputMode::Inherit).await
    {
        Ok(con) => con,
        Err(code) => return code,
    };
    let filename = script.clone();
    let mut argv = vec![filename.clone()];
    argv.extend(script_args.iter().cloned());
    if let Err(error) = con.set_argv(&argv).await {
        return report(&error);
    }
    let result = con.run_script(&source, &filename).await;
    let code = match (output_failed(&con), result) {
        (Some(error), _) => error,
        (None, Ok(status)) => ExitCode::from(status.clamp(0, 255) as u8),
        (None, Err(error)) => report(&error),
    };
    // The session finishes (its scratch directory removed) before we exit.
    let _ = con.close().await;
    code
}

pub(crate) async fn eval(args: EvalArgs) -> ExitCode {
    let con = match connect(&args.target, &args.limits).await {
        Ok(con) => con,
        Err(code) => return code,
    };
    let code = eval_on(&con, &args).await;
    // The session finishes (its scratch directory removed) before we exit.
    let _ = con.close().await;
    code
}

async fn eval_on(con: &Connection, args: &EvalArgs) -> ExitCode {
    // The repr as text UTF-8 can carry, whatever the object's __repr__ returns.
    const REPR: &str = "def __pushy_repr(v):\n    \
        return repr(v).encode('utf-8', 'backslashreplace').decode('utf-8')";
    let result = match con.define(REPR).await {
        Ok(repr) => match con.eval(&args.expression).await {
            Ok(value) => repr
                .call(&(value,))
                .await
                .and_then(|v| v.extract::<String>()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(mut text) => {
            // The value is printed here, so the output limit is applied here.
            let limit = args
                .limits
                .output_limit
                .unwrap_or(64)
                .saturating_mul(1 << 20);
            let cut = text.len() > limit;
            if cut {
                text.truncate(text.floor_char_boundary(limit));
            }
            use std::io::Write as _;
            if !cut {
                text.push('\n');
            }
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            drop(stdout);
            if cut {
                errln!(
                    "\n[pushy: output limit of {limit} bytes reached; the rest of the value was not printed]"
                );
            }
            if let Err(error) = written {
                errln!("pushy: cannot write the value: {error}");
                return ExitCode::FAILURE;
            }
            output_failed(con).unwrap_or(ExitCode::SUCCESS)
        }
        Err(Error::Python(exception)) if exception.is_instance("SystemExit") => {
            exit_status(con, &exception).await
        }
        Err(error) => report(&error),
    }
}

/// Output that could not be written is a failure, as for python3 (whose
/// print raises, and whose final flush makes it exit 1 or 120).
fn output_failed(con: &Connection) -> Option<ExitCode> {
    let kind = con.output_error()?;
    errln!(
        "pushy: cannot write the session's output: {}",
        std::io::Error::from(kind)
    );
    Some(ExitCode::FAILURE)
}

/// The exit status a `SystemExit` asks for, as python3 computes it: its
/// `code` if an int, 0 for None, else 1 after printing the code.
/// The guest computes it, as for `pushy run` (`pushy_guest.dispatch.exit_status`).
async fn exit_status(con: &Connection, exception: &pushy::PythonError) -> ExitCode {
    const STATUS: &str = "def __pushy_exit_status(request):\n    \
        from pushy_guest.dispatch import exit_status\n    \
        return exit_status(request.code)";
    let Some(request) = &exception.exception else {
        return ExitCode::FAILURE;
    };
    let status = match con.define(STATUS).await {
        Ok(helper) => helper
            .call(&(request,))
            .await
            .and_then(|v| v.extract::<u8>()),
        Err(error) => Err(error),
    };
    match status {
        Ok(status) => ExitCode::from(status),
        Err(error) => report(&error),
    }
}
