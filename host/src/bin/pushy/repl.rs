//! `pushy repl`: Python's interactive prompt, with the interpreter in the sandbox.

use std::process::ExitCode;

use pushy::{Connection, Error};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::cli::{LimitArgs, TargetArgs};
use crate::{connect, report};

/// Compiles one interactive input like `python3` does: `'more'` while the
/// input is incomplete, expression statements echo their value; a
/// `SystemExit` gives the status python3 would exit with.
const REPL_HELPER: &str = r#"
def __pushy_repl(source):
    import codeop, sys, traceback
    try:
        code = codeop.compile_command(source, '<stdin>', 'single')
    except (SyntaxError, OverflowError, ValueError) as error:
        traceback.print_exception(type(error), error, None)
        return 'done'
    if code is None:
        return 'more'
    try:
        exec(code, globals())
    except SystemExit as request:
        from pushy_guest.dispatch import exit_status
        return exit_status(request.code)
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
    return 'done'
"#;

struct Session {
    con: Connection,
    helper: pushy::RemoteObject,
}

async fn start(target: &TargetArgs, limits: &LimitArgs) -> Result<Session, ExitCode> {
    let con = connect(target, limits).await?;
    let helper = con.define(REPL_HELPER).await.map_err(|e| report(&e))?;
    Ok(Session { con, helper })
}

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".pushy_history"))
}

pub(crate) async fn repl(target: TargetArgs, limits: LimitArgs) -> ExitCode {
    let mut session = match start(&target, &limits).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let mut editor = match DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => {
            errln!("pushy: cannot start the line editor: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = history_file() {
        let _ = editor.load_history(&path);
    }
    errln!(
        "Python in a wasmtime sandbox ({}). Ctrl-D exits; Ctrl-C stops a running call.",
        target.target
    );
    let mut buffer = String::new();
    let code = loop {
        let prompt = if buffer.is_empty() { ">>> " } else { "... " };
        let (returned, line) = tokio::task::spawn_blocking(move || {
            let line = editor.readline(prompt);
            (editor, line)
        })
        .await
        .expect("line editor thread");
        editor = returned;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                errln!("KeyboardInterrupt");
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break ExitCode::SUCCESS,
            Err(error) => {
                errln!("pushy: {error}");
                break ExitCode::FAILURE;
            }
        };
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        let args = (buffer.as_str(),);
        let call = session.helper.call(&args);
        let outcome = tokio::select! {
            outcome = call => outcome,
            _ = tokio::signal::ctrl_c() => {
                session.con.interrupt();
                Err(Error::Interrupted)
            }
        };
        match &outcome {
            Ok(pushy::Value::Str(state)) if state == "more" => continue,
            Ok(pushy::Value::Int(status)) => break ExitCode::from((status & 0xFF) as u8),
            Err(Error::Exited { status }) => break ExitCode::from((status & 0xFF) as u8),
            Ok(_) => {
                let _ = editor.add_history_entry(buffer.as_str());
            }
            Err(error) => {
                let _ = editor.add_history_entry(buffer.as_str());
                if error.session_survives() {
                    report(error);
                } else {
                    errln!(
                        "pushy: {error}\npushy: the session's state did not survive; starting a fresh session"
                    );
                    session = match start(&target, &limits).await {
                        Ok(session) => session,
                        Err(code) => break code,
                    };
                }
            }
        }
        buffer.clear();
    };
    if let Some(path) = history_file() {
        let _ = editor.save_history(&path);
    }
    code
}
