//! actix-web wiring: provider routes from [`dialects`], plus the test hooks
//! `GET /_stats`, `POST /_reset` and `GET /_health` (outside `/v1` so no SDK path can
//! collide with them).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use crate::anthropic::Anthropic;
use crate::bedrock::Bedrock;
use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::gemini::Gemini;
use crate::guard;
use crate::ollama::Ollama;
use crate::openai::{self, OpenAi};
use crate::sse;
use crate::stats::{AuthSeen, LastHeaders, Stats, AUTH_HEADERS};

/// Largest request body accepted (the gateway's own limit is what tests exercise).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Pause before dropping the connection on `x-local-provider-abort-after`.
const ABORT_FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// Every provider API this server speaks. Add new dialects here.
pub fn dialects() -> Vec<Arc<dyn Dialect>> {
    vec![
        Arc::new(OpenAi::OPENAI),
        Arc::new(OpenAi::AZURE),
        Arc::new(OpenAi::VLLM),
        Arc::new(OpenAi::OLLAMA),
        Arc::new(Anthropic),
        Arc::new(Gemini),
        Arc::new(Bedrock),
        Arc::new(Ollama),
    ]
}

/// Shared by all workers.
#[derive(Debug, Default)]
pub struct AppState {
    /// The provider credential requests must carry (`--expect-key`); `None` accepts any.
    pub expect_key: Option<String>,
    /// Whether Bedrock requests must carry a SigV4 `Authorization` (`--expect-sigv4`).
    pub expect_sigv4: bool,
    pub stats: Stats,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(expect_key: Option<String>) -> AppState {
        AppState {
            expect_key,
            ..AppState::default()
        }
    }

    /// Also require SigV4-signed Bedrock requests.
    pub fn with_sigv4(mut self, expect_sigv4: bool) -> AppState {
        self.expect_sigv4 = expect_sigv4;
        self
    }

    fn response_meta(&self) -> ResponseMeta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        ResponseMeta {
            id: format!("chatcmpl-local{:08x}{n:06}", now.as_secs() & 0xffff_ffff),
            created: now.as_secs(),
        }
    }
}

/// Registers all routes; `state` must also be installed with `App::app_data`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES));
    for dialect in dialects() {
        for path in dialect.paths() {
            let dialect = Arc::clone(&dialect);
            cfg.route(
                path,
                web::post().to(
                    move |req: HttpRequest, body: web::Bytes, state: web::Data<AppState>| {
                        let dialect = Arc::clone(&dialect);
                        async move { handle(dialect.as_ref(), &req, &body, &state).await }
                    },
                ),
            );
        }
    }
    cfg.route("/_stats", web::get().to(stats))
        .route("/_reset", web::post().to(reset))
        .route("/_health", web::get().to(health))
        .default_service(web::to(not_found));
}

fn header_text(value: &actix_web::http::header::HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn leaks_client_key(headers: &HeaderMap) -> bool {
    headers
        .iter()
        .any(|(_, value)| guard::contains_client_key(&header_text(value)))
}

fn describe_headers(
    headers: &HeaderMap,
    dialect: &dyn Dialect,
    expect_key: Option<&str>,
) -> LastHeaders {
    let mut names: Vec<String> = headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .collect();
    names.sort();
    names.dedup();
    let auth = AUTH_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name).map(|value| (*name, header_text(value))))
        .map(|(name, value)| {
            let seen = AuthSeen {
                starts_with_tp: guard::credential(&value).starts_with(guard::CLIENT_KEY_PREFIX),
                matches_expected: expect_key.map(|key| {
                    dialect.auth().header() == Some(name) && dialect.auth().matches(&value, key)
                }),
            };
            (name.to_owned(), seen)
        })
        .collect();
    LastHeaders { names, auth }
}

fn credential_ok(
    headers: &HeaderMap,
    query: &str,
    dialect: &dyn Dialect,
    state: &AppState,
) -> bool {
    let auth = dialect.auth();
    match (auth, state.expect_key.as_deref()) {
        (Auth::SigV4, _) => {
            !state.expect_sigv4
                || headers
                    .get("authorization")
                    .is_some_and(|value| auth.matches(&header_text(value), ""))
        }
        // Keyless: when keys are checked at all, no credential may arrive.
        (Auth::None, Some(_)) => AUTH_HEADERS.iter().all(|name| headers.get(*name).is_none()),
        (_, None) => true,
        (Auth::Bearer | Auth::Header(_), Some(key)) => {
            let in_header = auth
                .header()
                .and_then(|name| headers.get(name))
                .is_some_and(|value| auth.matches(&header_text(value), key));
            // Google also takes the key as `?key=`.
            let in_query = auth == Auth::Header("x-goog-api-key")
                && Call {
                    path: "",
                    query,
                    body: b"",
                }
                .query_param("key")
                    == Some(key);
            in_header || in_query
        }
    }
}

async fn handle(
    dialect: &dyn Dialect,
    req: &HttpRequest,
    body: &[u8],
    state: &AppState,
) -> HttpResponse {
    let headers = req.headers();
    let expect_key = state.expect_key.as_deref();
    let leaked = leaks_client_key(headers) || guard::contains_client_key(req.query_string());
    let behaviour = Behaviour::from_headers(headers);
    let call = Call {
        path: req.path(),
        query: req.query_string(),
        body,
    };
    let outcome = if leaked {
        Err(Refusal::LeakedClientKey)
    } else if !credential_ok(headers, call.query, dialect, state) {
        Err(Refusal::InvalidCredential)
    } else if let Err(message) = dialect.check_headers(headers) {
        Err(Refusal::BadRequest(message))
    } else {
        match &behaviour {
            Err(message) => Err(Refusal::BadRequest(message.clone())),
            Ok(Behaviour {
                fail_status: Some(status),
                ..
            }) => Err(Refusal::Injected(*status)),
            Ok(behaviour) => dialect.render(&call, behaviour, &state.response_meta()),
        }
    };
    let refusal = outcome.as_ref().err().cloned();
    let rendered = outcome.unwrap_or_else(|refusal| dialect.refuse(&refusal));
    let behaviour = behaviour.unwrap_or_default();
    let plan = WritePlan::new(&rendered, &behaviour);

    let last_headers = describe_headers(headers, dialect, expect_key);
    let last_body = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    state.stats.update(|s| {
        s.requests += 1;
        *s.by_provider.entry(dialect.name().to_owned()).or_default() += 1;
        match refusal {
            None => s.completed += 1,
            Some(Refusal::LeakedClientKey) => s.leaked_client_keys += 1,
            Some(Refusal::InvalidCredential) => s.rejected_credential += 1,
            Some(Refusal::BadRequest(_)) => s.rejected_bad_request += 1,
            Some(Refusal::Injected(_)) => s.injected_failures += 1,
        }
        if plan.aborted {
            s.aborted += 1;
        }
        if let Some(reported) = rendered.reported {
            if reported.complete_at <= plan.emitted_bytes {
                s.total_tokens_reported += reported.usage.total_tokens();
            }
        }
        if let Some(spent) = rendered.spent {
            s.total_tokens_spent += spent.total_tokens();
        }
        s.last_headers = last_headers;
        s.last_body = last_body;
    });
    tracing::info!(
        provider = dialect.name(),
        status = rendered.status,
        total_tokens = rendered.spent.map(|u| u.total_tokens()),
        aborted = plan.aborted,
        "provider request"
    );
    respond(&rendered, &behaviour, plan)
}

/// How a rendered body is written: the pieces, and where an abort cuts them.
struct WritePlan {
    writes: Vec<Bytes>,
    /// Number of writes sent before the connection is dropped (`None`: all, cleanly).
    cut_after: Option<usize>,
    emitted_bytes: usize,
    aborted: bool,
}

impl WritePlan {
    fn new(rendered: &Rendered, behaviour: &Behaviour) -> WritePlan {
        let writes = sse::split_writes(&rendered.frames, behaviour.chunk_bytes);
        let cut_after = behaviour.abort_after.filter(|limit| *limit < writes.len());
        let emitted_bytes = match cut_after {
            Some(limit) => sse::total_len(&writes[..limit]),
            None => sse::total_len(&writes),
        };
        WritePlan {
            writes,
            cut_after,
            emitted_bytes,
            aborted: cut_after.is_some(),
        }
    }
}

fn respond(rendered: &Rendered, behaviour: &Behaviour, plan: WritePlan) -> HttpResponse {
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    builder.content_type(rendered.content_type);
    for (name, value) in &rendered.headers {
        builder.insert_header((*name, value.as_str()));
    }
    let is_stream = rendered.stream;
    if !is_stream && !behaviour.needs_streaming_writes() {
        return builder.body(plan.writes.concat());
    }
    if is_stream {
        builder.insert_header(("cache-control", "no-cache"));
    } else {
        // A JSON document keeps its Content-Length even when written in pieces.
        let total = sse::total_len(&plan.writes);
        builder.no_chunking(u64::try_from(total).unwrap_or(u64::MAX));
    }
    let mut items: Vec<Result<Bytes, io::Error>> = plan.writes.into_iter().map(Ok).collect();
    if let Some(limit) = plan.cut_after {
        items.truncate(limit);
        items.push(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "x-local-provider-abort-after: closing mid-body on purpose",
        )));
    }
    // actix flushes its write buffer whenever the body stream is pending, so a pause
    // between writes keeps them separate on the wire: a real sleep with the delay knob,
    // else a bare yield when odd chunk sizes were asked for. Before an abort, wait long
    // enough for the bytes already written to leave, so the peer sees a cut stream
    // rather than an empty reply.
    let delay = Duration::from_millis(behaviour.delay_ms);
    let separate = behaviour.chunk_bytes.is_some();
    let body = futures_util::stream::iter(items.into_iter().enumerate()).then(
        move |(index, item)| async move {
            if item.is_err() {
                tokio::time::sleep(ABORT_FLUSH_PAUSE.max(delay)).await;
            } else if index > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            } else if index > 0 && separate {
                tokio::task::yield_now().await;
            }
            item
        },
    );
    builder.streaming(body)
}

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats.snapshot())
}

async fn reset(state: web::Data<AppState>) -> HttpResponse {
    state.stats.reset();
    HttpResponse::Ok().json(serde_json::json!({"reset": true}))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if leaks_client_key(req.headers()) {
        state.stats.update(|s| s.leaked_client_keys += 1);
    }
    let message = format!("Invalid URL ({} {})", req.method(), req.path());
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(openai::error_json(&message, "invalid_request_error", None))
}
