//! The bridge's pieces that need no skein: working directories under hostile values,
//! the saved cursor, and ID tokens from a local fake of the metadata server.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bridge::auth::Credentials;
use bridge::cursor::{Callback, CursorFile, Saved};
use bridge::workdir::{self, Context};

fn context(project: &str, workspace: Option<&str>) -> Context {
    Context {
        user_id: "u1".into(),
        project_id: project.into(),
        workspace_id: workspace.map(str::to_string),
        session_id: None,
    }
}

/// Resolves and prepares `template` for `project` under a fresh root: the directory
/// relative to the root, or the error's text.
fn check(template: &str, project: &str) -> Result<String, String> {
    let root = tempfile::tempdir().unwrap();
    let dir = workdir::resolve(root.path(), template, &context(project, None))
        .map_err(|e| e.to_string())?;
    let made = workdir::prepare(root.path(), &dir)
        .map_err(|e| e.to_string())?
        .map_err(|why| format!("no persistence: {why}"))?;
    let real_root = root.path().canonicalize().unwrap();
    Ok(made.strip_prefix(&real_root).unwrap().display().to_string())
}

#[test]
fn templates_resolve_under_the_root() {
    assert_eq!(
        check("{projectId}/{workspaceId}", "p1"),
        Ok("p1/default".into())
    );
    assert_eq!(
        check("users/{userId}/{projectId}", "alpha.beta-1"),
        Ok("users/u1/alpha.beta-1".into())
    );
}

#[test]
fn values_that_would_leave_the_root_are_refused_by_name() {
    for (value, why) in [
        ("..", "relative to another"),
        (".", "relative to another"),
        ("/etc", "absolute path"),
        ("a/../../etc", "path separator"),
        ("a\\b", "path separator"),
        ("nul\0byte", "NUL"),
        ("", "empty"),
        ("semi;colon", "outside the allowed"),
    ] {
        let error = check("{projectId}/{workspaceId}", value).unwrap_err();
        assert!(
            error.contains("X_PROJECT_ID") && error.contains(why),
            "{value:?}: {error}"
        );
    }
}

#[test]
fn templates_that_would_leave_the_root_are_refused() {
    for (template, why) in [
        ("../{projectId}", "without `..`"),
        ("/abs/{projectId}", "without `..`"),
        ("{projectId}/{nope}", "`{nope}` is not a placeholder"),
    ] {
        let error = check(template, "p1").unwrap_err();
        assert!(
            error.contains("WORK_PREFIX_TEMPLATE") && error.contains(why),
            "{template}: {error}"
        );
    }
}

#[test]
fn a_symbolic_link_out_of_the_root_is_refused_and_nothing_is_written_through_it() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("p1")).unwrap();
    let dir = workdir::resolve(
        root.path(),
        "{projectId}/{workspaceId}",
        &context("p1", Some("w")),
    )
    .unwrap();
    let error = workdir::prepare(root.path(), &dir).unwrap_err().to_string();
    assert!(error.contains("outside WORK_ROOT"), "{error}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // A link that leads nowhere cannot be checked: refused too.
    std::fs::remove_file(root.path().join("p1")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/far/away", root.path().join("p1")).unwrap();
    let error = workdir::prepare(root.path(), &dir).unwrap_err().to_string();
    assert!(error.contains("outside WORK_ROOT"), "{error}");

    // A link that stays inside the root is fine.
    std::fs::remove_file(root.path().join("p1")).unwrap();
    std::fs::create_dir(root.path().join("real")).unwrap();
    std::os::unix::fs::symlink(root.path().join("real"), root.path().join("p1")).unwrap();
    let made = workdir::prepare(root.path(), &dir).unwrap().unwrap();
    assert!(made.ends_with("real/w"), "{}", made.display());
}

#[test]
fn a_missing_or_read_only_root_means_no_persistence() {
    let root = tempfile::tempdir().unwrap();
    let gone = root.path().join("gone");
    let dir = workdir::resolve(&gone, "{projectId}", &context("p1", None)).unwrap();
    let why = workdir::prepare(&gone, &dir).unwrap().unwrap_err();
    assert!(why.contains("does not exist"), "{why}");

    let read_only = root.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    let mut permissions = std::fs::metadata(&read_only).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o555);
    std::fs::set_permissions(&read_only, permissions).unwrap();
    let dir = workdir::resolve(&read_only, "{projectId}", &context("p1", None)).unwrap();
    let outcome = workdir::prepare(&read_only, &dir).unwrap();
    // Root ignores permissions; anyone else cannot create the directory.
    if !is_root() {
        assert!(outcome.unwrap_err().contains("cannot create"));
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn the_cursor_round_trips_and_a_broken_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = CursorFile::new(Some(dir.path().to_path_buf()));
    assert_eq!(file.load().unwrap(), None);
    let saved = Saved {
        after: 42,
        pending: Some(Callback {
            execution: "e1".into(),
            event: serde_json::json!({"type": "t"}),
        }),
    };
    file.save(&saved).unwrap();
    assert_eq!(file.load().unwrap(), Some(saved));
    std::fs::write(dir.path().join(bridge::cursor::FILE), "{half").unwrap();
    let error = file.load().unwrap_err().to_string();
    assert!(error.contains("not a bridge cursor"), "{error}");
    // Without persistence nothing is read or written.
    let none = CursorFile::new(None);
    none.save(&Saved::default()).unwrap();
    assert_eq!(none.load().unwrap(), None);
    assert!(Path::new(dir.path()).exists());
}

/// A JWT-shaped token that expires in `seconds`.
fn jwt(seconds: i64, n: usize) -> String {
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let exp = jiff::Timestamp::now().as_second() + seconds;
    format!(
        "{}.{}.sig{n}",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"exp": exp, "aud": "x"}))
    )
}

#[tokio::test]
async fn id_tokens_come_from_the_metadata_server_and_are_cached_until_near_expiry() {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[derive(serde::Deserialize)]
    struct Params {
        audience: String,
    }
    // Tokens for audience `long` live an hour; for `short`, 200 s (under the refresh
    // margin, so kept for half of that); each request is counted.
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
            axum::routing::get(
                |State(hits): State<Arc<AtomicUsize>>,
                 headers: HeaderMap,
                 Query(p): Query<Params>| async move {
                    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok())
                        != Some("Google")
                    {
                        return (StatusCode::FORBIDDEN, "missing Metadata-Flavor".to_string());
                    }
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    let life = if p.audience == "short" { 200 } else { 3600 };
                    (StatusCode::OK, jwt(life, n))
                },
            ),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let credentials = Credentials::metadata(&host);
    let first = credentials.token("long").await.unwrap().unwrap();
    assert!(first.ends_with("sig0"), "{first}");
    assert_eq!(credentials.token("long").await.unwrap().unwrap(), first);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second call used the cache"
    );
    let other = credentials.token("short").await.unwrap().unwrap();
    assert!(other.ends_with("sig1"), "{other}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one token per audience");

    // A metadata server that refuses says so, naming the audience.
    let nowhere = Credentials::metadata("127.0.0.1:1");
    let error = nowhere.token("aud-x").await.unwrap_err().to_string();
    assert!(
        error.contains("aud-x") && error.contains("127.0.0.1:1"),
        "{error}"
    );
}
