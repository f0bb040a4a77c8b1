//! The dashboard's files: the web UI built from `ui/` into `ui/dist`, compiled into the
//! binary, and served under `/ui/` (with `/` sending browsers there).
//!
//! **API boundary:** static files only. The UI is a client of the REST API like any
//! other, with the same bearer tokens; nothing here reads the store or checks a token,
//! so the files themselves are public (they hold no data).
//!
//! Every path under `/ui/` that is not a file is the app's own page (a deep link such
//! as `/ui/executions/ID`), answered with `index.html` for the app to route. Files under
//! `assets/` carry a hash of their content in their name and are cached for good;
//! `index.html` is revalidated on every load, so a new server version takes effect at
//! once.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

#[derive(rust_embed::Embed)]
#[folder = "../../ui/dist"]
struct Files;

/// What the browser may load: only from this server, with inline style attributes
/// (the app sets widths and colours on elements) and data: images.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// The dashboard's routes: `/`, `/ui` and `/ui/…`. No fallback, so it merges into the
/// API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { serve("") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}

/// A file found for a path under `/ui/`.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// The embedded file's name.
    pub file: String,
    pub content_type: String,
    /// Hashed assets for a year, everything else revalidated.
    pub immutable: bool,
}

/// Which file answers `path` (relative to `/ui/`): the file itself, or the app's
/// `index.html` for its own pages. `None` for a missing asset (a stale hashed name),
/// which gets a 404 rather than HTML where a script was expected.
pub fn lookup(path: &str) -> Option<Found> {
    found(path.trim_start_matches('/')).map(|(found, _)| found)
}

/// [`lookup`], with the file's bytes: one read of the embedded files per request.
fn found(path: &str) -> Option<(Found, rust_embed::EmbeddedFile)> {
    if !path.is_empty()
        && let Some(file) = Files::get(path)
    {
        let found = Found {
            file: path.to_string(),
            content_type: content_type(file.metadata.mimetype()),
            immutable: path.starts_with("assets/"),
        };
        return Some((found, file));
    }
    if path.starts_with("assets/") {
        return None;
    }
    let index = Files::get("index.html")?;
    let found = Found {
        file: "index.html".into(),
        content_type: content_type(index.metadata.mimetype()),
        immutable: false,
    };
    Some((found, index))
}

/// The file's type, with the charset of the text ones.
fn content_type(mime: &str) -> String {
    match mime {
        "text/html" | "text/css" | "text/javascript" | "application/javascript" => {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    }
}

fn serve(path: &str) -> Response {
    let Some((found, file)) = found(path.trim_start_matches('/')) else {
        return (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response();
    };
    let cache = if found.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(headers, header::CONTENT_TYPE, &found.content_type);
    set(headers, header::CACHE_CONTROL, cache);
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_the_app_get_its_index() {
        for path in [
            "",
            "executions",
            "executions/abc-1",
            "workflows/render",
            "server",
        ] {
            let found = lookup(path).expect("the built UI is embedded");
            assert_eq!(found.file, "index.html", "{path}");
            assert!(!found.immutable);
            assert_eq!(found.content_type, "text/html; charset=utf-8");
        }
    }

    #[test]
    fn assets_are_served_as_themselves_and_cached_for_good() {
        let script = Files::iter()
            .find(|f| f.starts_with("assets/") && f.ends_with(".js"))
            .expect("the built UI has a script under assets/");
        let found = lookup(&script).unwrap();
        assert_eq!(found.file, script);
        assert!(found.immutable);
        assert!(found.content_type.contains("javascript"), "{found:?}");
        assert_eq!(
            lookup("assets/gone-1234.js"),
            None,
            "a stale asset is a 404"
        );
    }

    #[test]
    fn the_index_loads_its_assets_from_under_ui() {
        let index = Files::get("index.html").unwrap();
        let text = String::from_utf8_lossy(&index.data);
        assert!(text.contains("/ui/assets/"), "{text}");
        // Nothing from elsewhere: the dashboard works offline.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{text}"
        );
    }
}
