//! Object storage on real local directories, and on cloud emulators (`cloud`).

#[cfg(any(feature = "s3", feature = "azure"))]
mod cloud;

use objects::{Allowlist, Objects, check_key, upload_dir};

fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn keys_stay_under_their_prefix() {
    for good in ["a", "chunk-0001.y4m", "plans/abc_1/frames.bin"] {
        assert!(check_key(good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("", "1 to 1024"),
        ("../etc/passwd", "`..`"),
        ("a/../../b", "`..`"),
        ("/abs", "empty segment"),
        ("a//b", "empty segment"),
        ("a b", "only A-Z"),
        ("a\\b", "only A-Z"),
        ("%2e%2e", "only A-Z"),
    ] {
        let e = check_key(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn the_allowlist_checks_bucket_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let root = url::Url::from_directory_path(dir.path()).unwrap();
    let allowed = format!("{}renders", root);
    let allow = Allowlist::parse(Some(&format!("s3://bucket/out, {allowed}"))).unwrap();
    let objects = Objects::open(&allowed, allow.clone()).unwrap();
    let url = objects
        .put("job-1/chunk-0.bin", b"bytes".to_vec())
        .await
        .unwrap();
    assert!(
        url.as_str().ends_with("/renders/job-1/chunk-0.bin"),
        "{url}"
    );
    assert_eq!(objects.get("job-1/chunk-0.bin").await.unwrap(), b"bytes");
    assert!(objects.exists("job-1/chunk-0.bin").await.unwrap());
    assert!(!objects.exists("job-1/chunk-1.bin").await.unwrap());

    // Beside the prefix, in the same "bucket": refused before anything is written.
    let sibling = format!("{}renders-other", root);
    let e = Objects::open(&sibling, allow.clone())
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the storage allowlist"), "{e}");
    assert!(!dir.path().join("renders-other").exists());
    // `*` opts out on purpose; a broken entry is refused.
    assert!(Objects::open(&sibling, Allowlist::parse(Some("*")).unwrap()).is_ok());
    assert!(Allowlist::parse(Some("not a url")).is_err());
}

#[tokio::test]
async fn a_directory_uploads_once_by_its_content() {
    let site = tempfile::tempdir().unwrap();
    write(
        site.path(),
        &[
            ("index.html", "<h1>hi</h1>"),
            ("assets/app.js", "console.log(1)"),
            (".git/HEAD", "ref: main"),
            ("node_modules/x/index.js", "junk"),
        ],
    );
    let store = tempfile::tempdir().unwrap();
    let to = Objects::open(store.path().to_str().unwrap(), Allowlist::everything()).unwrap();
    let first = upload_dir(site.path(), &to).await.unwrap();
    assert_eq!((first.files, first.already_there), (2, false));
    assert_eq!(first.hash.len(), 64);
    let uploaded = store.path().join(&first.hash);
    assert_eq!(
        std::fs::read_to_string(uploaded.join("assets/app.js")).unwrap(),
        "console.log(1)"
    );
    assert!(!uploaded.join(".git").exists() && !uploaded.join("node_modules").exists());
    assert!(
        first.url.as_str().ends_with(&format!("/{}/", first.hash)),
        "{}",
        first.url
    );

    // The same content again: the same address, nothing sent.
    std::fs::write(site.path().join(".git/HEAD"), "ref: other").unwrap();
    let second = upload_dir(site.path(), &to).await.unwrap();
    assert_eq!(
        (second.hash.as_str(), second.already_there),
        (first.hash.as_str(), true)
    );
    // One byte changed: another address.
    std::fs::write(site.path().join("index.html"), "<h1>hi!</h1>").unwrap();
    let third = upload_dir(site.path(), &to).await.unwrap();
    assert_ne!(third.hash, first.hash);
    assert!(!third.already_there);
}
