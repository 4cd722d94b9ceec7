//! `GET /monitoring`: a self-contained HTML page that charts what the JSON endpoints report
//! (served version, traffic, latency, drift per feature, live performance) for people who
//! would rather look than read. No token is needed for the page itself: it holds no data.
//! Its script reads the token from the URL fragment (`/monitoring#token=...`, which browsers
//! never send) or a password box, keeps it in `sessionStorage`, and calls the token-guarded
//! JSON endpoints with it.
//!
//! The page, its script and its style sheet are embedded in the binary and served from
//! `/monitoring` and `/monitoring/assets/{file}`: no external assets, no inline script, and
//! a Content-Security-Policy that allows nothing else.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// The monitoring page and its assets.
pub fn routes(protect: &super::Protect) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(protect.route(utoipa_axum::routes!(page)))
        .routes(protect.route(utoipa_axum::routes!(assets)))
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// Same origin only, for scripts, styles and the JSON calls; no inline code, no framing, no
/// forms posted anywhere, no `<base>` rewriting.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The embedded body with its content type and the security headers every asset carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// `GET /monitoring`: the page.
#[utoipa::path(
    get,
    path = "/monitoring",
    tag = "monitoring",
    summary = "The monitoring page (HTML; it calls the JSON endpoints with a token it is given)",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /monitoring/assets/{file}`: the page's script and style sheet.
#[utoipa::path(
    get,
    path = "/monitoring/assets/{file}",
    tag = "monitoring",
    summary = "The monitoring page's script and style sheet",
    params(("file" = super::openapi::AssetName, Path, description = "The asset.")),
    responses(
        (status = 200, description = "The asset.", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such asset.", body = super::error::ErrorBody),
    )
)]
pub async fn assets(Path(file): Path<String>) -> Result<Response, ApiError> {
    match file.as_str() {
        "dashboard.js" => Ok(asset("text/javascript; charset=utf-8", DASHBOARD_JS)),
        "dashboard.css" => Ok(asset("text/css; charset=utf-8", DASHBOARD_CSS)),
        _ => Err(ApiError::NotFound(format!("no asset {file:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_its_own_assets() {
        for text in [INDEX_HTML, DASHBOARD_JS, DASHBOARD_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(INDEX_HTML.contains("/monitoring/assets/dashboard.js"));
        assert!(INDEX_HTML.contains("/monitoring/assets/dashboard.css"));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        assert!(!INDEX_HTML.contains("style="), "no inline style");
    }
}
