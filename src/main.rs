//! The `codex-node` binary: parse flags, set up logs, open the repository, serve.

use std::net::TcpListener;

use clap::Parser;
use codex_node::{cli::Args, Node};
use tracing_subscriber::EnvFilter;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    actix_web::rt::System::new().block_on(async move {
        let node = Node::start(args.engine_config())?;
        let listener = TcpListener::bind((args.api_bindaddr, args.api_port))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "codex-node listening on http://{addr}/api/codex/v1");
        codex_node::run(listener, node.clone(), args.http_config())?.await?;
        node.shutdown().await?;
        tracing::info!("stopped");
        Ok(())
    })
}
