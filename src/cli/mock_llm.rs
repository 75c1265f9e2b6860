//! `runner mock-llm`: serve the mock OpenAI-compatible provider, so the demo
//! and out-of-process tests can point the real client at a local URL.

use super::exit::{CliResult, Code};
use std::io::Write;
use std::path::PathBuf;
use testkit::mock::{MockScript, MockServer};

#[derive(clap::Args, Debug)]
pub struct MockLlmArgs {
    /// Address to listen on; port 0 picks a free port (the printed line says which).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// YAML or JSON script: latency, per-model rpm limits, verdicts and faults.
    #[arg(long)]
    pub script: Option<PathBuf>,
}

pub fn run(a: MockLlmArgs) -> CliResult {
    let script = match &a.script {
        Some(path) => match MockScript::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(Code::Usage.into());
            }
        },
        None => MockScript::default(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Err(Code::Failure.into());
        }
    };
    rt.block_on(serve(&a.listen, script))
}

/// Binds, announces the URL on stdout (one flushed line, which callers wait
/// for), then serves until Ctrl-C or SIGTERM.
async fn serve(listen: &str, script: MockScript) -> CliResult {
    let server = match MockServer::start(listen, script).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return Err(Code::Usage.into());
        }
    };
    // Install the handlers before announcing: a caller may signal as soon
    // as it has read the line.
    let stop = stop_signal();
    {
        let mut out = std::io::stdout().lock();
        let line = format!("mock-llm listening on {}", server.base_url());
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::warn!("cannot write to stdout: {e}");
        }
    }
    stop.await;
    server.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled. A handler that
/// cannot be installed never fires rather than stopping the server at once.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        let ctrl_c = async {
            if ctrl_c.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        {
            let term = async {
                match term {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = ctrl_c => {}
                () = term => {}
            }
        }
        #[cfg(not(unix))]
        ctrl_c.await;
    }
}
