//! `/static/*`: the built dashboard (a single-page app) from `DASHBOARD_DIR`.
//!
//! Files are served with their content type; Vite's content-hashed files under
//! `assets/` are cached for a year (`immutable`), everything else (`index.html` above
//! all) is revalidated on every load (`no-cache`), so a new build shows at once. A path
//! without a file extension that names no file is a client-side route: it gets
//! `index.html`. When the directory holds no `index.html` the answer is a 503 page
//! saying how to build the dashboard.

use std::path::{Component, Path, PathBuf};

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// `GET /static` → `/static/` (relative asset URLs resolve against the slash).
pub async fn redirect_to_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/static/"))
        .finish()
}

/// `GET /static/{path}`.
pub async fn serve(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let tail = req.match_info().get("path").unwrap_or_default().to_owned();
    let dir = state.dashboard_dir.clone();
    let found = match web::block(move || lookup(&dir, &tail)).await {
        Ok(found) => found.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match found {
        Ok(Lookup::File {
            bytes,
            content_type,
            immutable,
        }) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, content_type))
            .insert_header((
                header::CACHE_CONTROL,
                if immutable { IMMUTABLE } else { REVALIDATE },
            ))
            .insert_header(("x-content-type-options", "nosniff"))
            .body(bytes),
        Ok(Lookup::NotFound) => HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, REVALIDATE))
            .content_type(ContentType::plaintext())
            .body("not found\n"),
        Ok(Lookup::NotBuilt) => {
            tracing::warn!(dir = %state.dashboard_dir.display(), "dashboard not built: no index.html");
            not_built(&state.dashboard_dir)
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard file read failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

fn not_built(dir: &Path) -> HttpResponse {
    let dir = html_escape(&dir.display().to_string());
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .insert_header((header::CACHE_CONTROL, REVALIDATE))
        .content_type(ContentType::html())
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Alfred dashboard not built</title></head><body>\
             <h1>The Alfred dashboard is not built</h1>\
             <p>The control plane serves the dashboard from <code>{dir}</code> \
             (<code>DASHBOARD_DIR</code>), which holds no <code>index.html</code>.</p>\
             <p>Build it from the repository root with <code>make run</code>, or by hand:</p>\
             <pre>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</pre>\
             <p>The API works meanwhile: see README.md.</p></body></html>\n"
        ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a request path maps to.
#[derive(Debug)]
enum Lookup {
    File {
        bytes: Vec<u8>,
        content_type: &'static str,
        immutable: bool,
    },
    NotFound,
    NotBuilt,
}

fn lookup(dir: &Path, tail: &str) -> std::io::Result<Lookup> {
    let index = dir.join("index.html");
    if !index.is_file() {
        return Ok(Lookup::NotBuilt);
    }
    let Some(relative) = safe_relative(tail) else {
        return Ok(Lookup::NotFound);
    };
    let candidate = dir.join(&relative);
    if relative.as_os_str().is_empty() || !candidate.is_file() {
        // A client-side route (no extension) gets the app; a missing asset is a 404.
        if relative.extension().is_some() {
            return Ok(Lookup::NotFound);
        }
        return Ok(Lookup::File {
            bytes: std::fs::read(index)?,
            content_type: "text/html; charset=utf-8",
            immutable: false,
        });
    }
    let immutable = relative.starts_with("assets");
    Ok(Lookup::File {
        bytes: std::fs::read(&candidate)?,
        content_type: content_type(&relative),
        immutable,
    })
}

/// The path below the dashboard directory, or `None` for anything that could leave it
/// (`..`, absolute paths, backslashes) or names a hidden file.
fn safe_relative(tail: &str) -> Option<PathBuf> {
    if tail.contains('\\') || tail.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(tail).components() {
        match component {
            Component::Normal(part) => {
                if part.to_string_lossy().starts_with('.') {
                    return None;
                }
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_directory() {
        assert_eq!(
            safe_relative("assets/app-1a2b.js"),
            Some(PathBuf::from("assets/app-1a2b.js"))
        );
        assert_eq!(safe_relative(""), Some(PathBuf::new()));
        assert_eq!(safe_relative("users/12"), Some(PathBuf::from("users/12")));
        assert_eq!(safe_relative("../secret"), None);
        assert_eq!(safe_relative("assets/../../x"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative(".env"), None);
        assert_eq!(safe_relative("a\\..\\b"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a.JS")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }
}
