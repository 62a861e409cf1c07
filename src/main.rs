//! The `codex-node` binary: parse flags, set up logs, open the repository, serve.

use clap::Parser;
use codex_node::{
    cli::{Args, Cli, Command},
    client, Node,
};
use tracing_subscriber::EnvFilter;

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let result = match cli.command {
        None => return serve(cli.serve),
        Some(Command::Upload {
            file,
            api,
            filename,
            mime,
        }) => client::upload(
            api.trim_end_matches('/'),
            &file,
            filename.as_deref(),
            mime.as_deref(),
        )
        .map(|cid| println!("{cid}")),
        Some(Command::Download {
            cid,
            output,
            network,
            api,
        }) => client::download(api.trim_end_matches('/'), &cid, output.as_deref(), network)
            .map(|_| ()),
        Some(Command::Connect { peer, addrs, api }) => {
            client::connect(api.trim_end_matches('/'), &peer, &addrs).map(|text| println!("{text}"))
        }
    };
    if let Err(e) = result {
        eprintln!("codex-node: {e}");
        std::process::exit(e.exit_code());
    }
    Ok(())
}

fn serve(args: Args) -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,libp2p_kad=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    actix_web::rt::System::new().block_on(async move {
        let node = match args.network_config() {
            Some(network) => Node::start_with_network(args.engine_config(), network).await?,
            None => Node::start(args.engine_config()).await?,
        };
        let listener = codex_node::bind((args.api_bindaddr, args.api_port).into())?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "codex-node listening on http://{addr}/api/codex/v1");
        let server = codex_node::run(listener, node.clone(), args.http_config())?;
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: requests in flight finish, then the store syncs");
            handle.stop(true).await;
        });
        server.await?;
        node.shutdown().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM (or when signals cannot be watched, never).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch stop signals; stop the node with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
