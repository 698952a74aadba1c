//! `alfred-local-provider`: serves the stand-in provider until killed.

use actix_web::{web, App, HttpServer};
use alfred_local_provider::server::{self, AppState};
use clap::Parser;

/// Idle keep-alive of client (gateway) connections, in seconds.
const KEEP_ALIVE_SECS: u64 = 300;

/// Stand-in LLM provider for Alfred's tests, benchmarks and demo.
#[derive(Debug, Parser)]
#[command(name = "alfred-local-provider", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, env = "LOCAL_PROVIDER_BIND", default_value = "127.0.0.1:8090")]
    bind: String,
    /// Provider credential every request must carry in the provider's auth header
    /// (OpenAI: `Authorization: Bearer <key>`); otherwise a provider-style 401.
    #[arg(long, env = "LOCAL_PROVIDER_EXPECT_KEY", hide_env_values = true)]
    expect_key: Option<String>,
    /// Require Bedrock requests to carry an AWS SigV4 `Authorization` header (as
    /// Envoy's AWS request-signing filter adds), else 403 `UnrecognizedClientException`.
    #[arg(long, env = "LOCAL_PROVIDER_EXPECT_SIGV4")]
    expect_sigv4: bool,
    /// Worker threads.
    #[arg(long, env = "LOCAL_PROVIDER_WORKERS", default_value_t = 2)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let state = web::Data::new(
        AppState::new(args.expect_key.filter(|key| !key.is_empty())).with_sigv4(args.expect_sigv4),
    );
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(server::configure)
    })
    .workers(args.workers.max(1))
    // Longer than a gateway's pause between requests: actix's default 5 s keep-alive
    // closes pooled connections Envoy is about to reuse (a 503 `UC` race).
    .keep_alive(std::time::Duration::from_secs(KEEP_ALIVE_SECS))
    .bind(&args.bind)?;
    for addr in server.addrs() {
        // Scripts and test fixtures wait for this line to learn the port.
        println!("alfred-local-provider listening on {addr}");
    }
    server.run().await
}
