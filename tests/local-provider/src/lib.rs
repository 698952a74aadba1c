//! Alfred's stand-in LLM provider.
//!
//! Tests, benchmarks and the demo `make run` need a provider that speaks the real wire
//! formats byte for byte, answers deterministically (so token counts can be asserted
//! exactly) and checks the gateway's promises from the provider's side of the mesh: the
//! client's `tp-` key must never arrive, and the provider credential must be swapped in.
//!
//! The crate is split so that more providers can be added without touching the server:
//! - [`usage`]: the documented, deterministic token-count rule and reply text.
//! - [`dialect`]: the [`dialect::Dialect`] trait — one implementation per provider API
//!   (auth header, error shape, how a request is rendered into response frames).
//! - [`openai`]: the OpenAI family — OpenAI, Azure OpenAI, vLLM/TGI and Ollama's
//!   OpenAI-compatible API — chat completions, JSON and SSE; [`openai_extra`] adds legacy
//!   completions and embeddings, [`responses`] the Responses API.
//! - [`anthropic`]: Anthropic Messages, JSON and named SSE events.
//! - [`gemini`]: Gemini `generateContent` / `streamGenerateContent` (SSE and JSON array).
//! - [`bedrock`]: Bedrock Converse / ConverseStream, framed by [`eventstream`].
//! - [`ollama`]: Ollama's native `/api/chat` and `/api/generate` (NDJSON).
//! - [`sse`]: server-sent-event framing and re-splitting a body into odd-sized writes.
//! - [`behaviour`]: per-request test knobs read from `x-local-provider-*` headers
//!   (chunk size, abort mid-stream, injected provider errors, delays, reply length).
//! - [`guard`]: detection of client keys that leaked through the gateway.
//! - [`stats`]: counters served at `GET /_stats`, cleared by `POST /_reset`.
//! - [`server`]: the actix-web wiring.

pub mod anthropic;
pub mod bedrock;
pub mod behaviour;
pub mod dialect;
pub mod eventstream;
pub mod gemini;
pub mod guard;
pub mod ollama;
pub mod openai;
pub mod openai_extra;
pub mod responses;
pub mod server;
pub mod sse;
pub mod stats;
pub mod usage;
