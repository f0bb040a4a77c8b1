//! The cloud stores against local emulators on loopback: `s3://` (the `s3` feature)
//! against moto's S3 server (Python, from PyPI), `az://` (the `azure` feature) against
//! Azurite (npm). Each test finds its emulator on the `PATH` (or in
//! `SKEIN_CLOUD_EMULATORS`, directories of them) and says it was skipped without it;
//! `SKEIN_REQUIRE_CLOUD_EMULATORS=1` (CI) fails instead.
//!
//! FIXME: `gs://` is compile-checked only: gcp-storage-emulator (PyPI) answers uploads
//! without the ETag that object_store requires; fake-gcs-server would do.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use objects::{Allowlist, Objects, upload_dir};

/// An emulator process, killed when dropped.
struct Emulator {
    child: Child,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("SKEIN_CLOUD_EMULATORS")
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in dirs {
        let path = dir.join(name);
        if path.is_file() {
            return Some(path);
        }
    }
    None
}

/// Starts `name` with the arguments `args` makes of a free port, and waits until the
/// port answers; `None` (after saying so) if the emulator is not installed.
fn emulator(test: &str, name: &str, args: impl Fn(u16) -> Vec<String>) -> Option<Emulator> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = program(name) else {
        if std::env::var_os("SKEIN_REQUIRE_CLOUD_EMULATORS").is_some_and(|v| v == "1") {
            panic!("{test}: SKEIN_REQUIRE_CLOUD_EMULATORS=1 but `{name}` is not installed");
        }
        eprintln!(
            "{test}: SKIPPED, `{name}` is not installed (see .ci/run for how CI installs it)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .args(args(port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let emulator = Emulator { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{name} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(emulator)
}

fn options(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// What every store must do: put, get, exists, a content-addressed upload done once,
/// and the allowlist checked before any request.
async fn exercise(url: &str, options: Vec<(String, String)>) {
    let allow = Allowlist::parse(Some(url)).unwrap();
    let objects = Objects::open_with(url, allow, options.clone()).unwrap();
    let put = objects.put("chunks/c1.bin", b"one".to_vec()).await.unwrap();
    assert_eq!(put.as_str(), format!("{url}/chunks/c1.bin"));
    assert_eq!(objects.get("chunks/c1.bin").await.unwrap(), b"one");
    assert!(objects.exists("chunks/c1.bin").await.unwrap());
    assert!(!objects.exists("chunks/c2.bin").await.unwrap());

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("assets")).unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(site.path().join("assets/app.js"), "console.log(1)").unwrap();
    let first = upload_dir(site.path(), &objects).await.unwrap();
    assert_eq!((first.files, first.already_there), (2, false));
    let again = upload_dir(site.path(), &objects).await.unwrap();
    assert_eq!(
        (again.hash, again.already_there),
        (first.hash.clone(), true)
    );
    assert_eq!(
        objects
            .get(&format!("{}/assets/app.js", first.hash))
            .await
            .unwrap(),
        b"console.log(1)"
    );

    // Outside the allowed prefix: refused before any request.
    let sibling = url.rsplit_once('/').unwrap().0.to_string() + "/other";
    let allow = Allowlist::parse(Some(url)).unwrap();
    let e = Objects::open_with(&sibling, allow, options).unwrap_err();
    assert!(e.to_string().contains("allow"), "{e}");
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_through_an_s3_compatible_endpoint() {
    let Some(moto) = emulator("s3", "moto_server", |port| {
        vec![
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    }) else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    // moto creates a bucket on an unsigned PUT.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/renders"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    exercise(
        "s3://renders/out",
        options(&[
            ("aws_endpoint", endpoint),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
            ("aws_region", "us-east-1".into()),
        ]),
    )
    .await;
}

/// Azurite's well-known development account.
#[cfg(feature = "azure")]
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
#[cfg(feature = "azure")]
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates container `name` on Azurite: a request signed with the account's shared key
/// (object_store makes no containers).
#[cfg(feature = "azure")]
async fn create_container(endpoint: &str, name: &str) {
    use base64::Engine;
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    // The string to sign: the verb, eleven empty standard headers, the x-ms- headers,
    // then the resource (the account, the path, the query).
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{name}?restype=container"))
        .header("x-ms-date", &date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header(
            "authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        response.text().await.unwrap_or_default()
    );
}

#[cfg(feature = "azure")]
#[tokio::test]
async fn azure_through_azurite() {
    let Some(azurite) = emulator("azure", "azurite-blob", |port| {
        vec![
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--inMemoryPersistence".into(),
            "--silent".into(),
            "--skipApiVersionCheck".into(),
        ]
    }) else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", azurite.port);
    create_container(&endpoint, "renders").await;
    exercise(
        "az://renders/out",
        options(&[
            ("azure_storage_account_name", AZURITE_ACCOUNT.into()),
            ("azure_storage_account_key", AZURITE_KEY.into()),
            ("azure_storage_endpoint", endpoint),
            ("azure_allow_http", "true".into()),
        ]),
    )
    .await;
}
