//! `GET /openapi.json`: the API description (OpenAPI 3.1), kept next to the routes in
//! `openapi.json` and checked against them by the tests.

use actix_web::HttpResponse;

/// The document, as written.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
