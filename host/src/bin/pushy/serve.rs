//! `pushy host --stdio` (one session over stdin/stdout, what `local:` and
//! `ssh:` start) and `pushy serve` (sessions over TCP).

use std::process::ExitCode;

use pushy::transport::auth::Token;
use pushy::transport::server::{ServerConfig, serve, serve_stdio};

use crate::cli::{HostArgs, ServeArgs, seconds};
use crate::{fail, sandbox_with, usage};

pub(crate) fn host(args: HostArgs) -> ExitCode {
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    // One session (and the check before it).
    let sandbox = match sandbox_with(session.clone(), &args.limits.preload, 2) {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    match serve_stdio(&sandbox, &session) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error.to_string()),
    }
}

pub(crate) async fn serve_command(args: ServeArgs) -> ExitCode {
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    let token = match Token::from_flag_or_env(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(error) => return usage(format!("{:#}", anyhow::Error::from(error))),
    };
    if token.is_none() && !args.no_auth {
        return usage(
            "serve needs --token-file FILE (or PUSHY_TOKEN_FILE); --no-auth to accept anyone",
        );
    }
    let idle_timeout = match seconds("--idle-timeout", args.idle_timeout) {
        Ok(idle_timeout) => idle_timeout,
        Err(error) => return usage(error),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match pushy::transport::tls::server_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => return usage(error),
        },
        _ => None,
    };
    // Room beyond --max-sessions for the check below and for sessions whose
    // slot is still being freed as the next one is admitted.
    let live_sessions = u32::try_from(args.max_sessions.max(1))
        .unwrap_or(u32::MAX)
        .saturating_add(16);
    let sandbox = match sandbox_with(session.clone(), &args.limits.preload, live_sessions) {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    // A limit no session can start with is a mistake to report now, not
    // to every client.
    if let Err(error) = sandbox.check_session(&session) {
        return usage(error);
    }
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&format!("cannot listen on {}: {error}", args.listen)),
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut config = ServerConfig::default();
    config.token = token;
    config.tls = tls;
    config.max_sessions = args.max_sessions.max(1);
    config.session = session;
    config.idle_timeout = idle_timeout;
    errln!("pushy: listening on {address}");
    match serve(listener, sandbox, config, shutdown_signal()).await {
        Ok(()) => {
            errln!("pushy: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
