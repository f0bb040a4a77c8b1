//! Object storage for artifacts (rendered chunks, uploaded sites), through the
//! `object_store` crate: `file://` always, `s3://`, `gs://` and `az://` with the `s3`,
//! `gcs` and `azure` features.
//!
//! Every object is named by a URL, and every write and read is checked twice before it
//! happens: the key's segments must be plain names (`[A-Za-z0-9._-]+`, never `.` or
//! `..`), so nothing escapes its prefix; and the URL must fall under an allowlist entry,
//! which names a bucket *and* a key prefix (`s3://renders/out`), or is `*` to allow
//! everything on purpose. Without an allowlist everything is allowed, and that is said
//! once as a warning.
//!
//! **API boundary:** knows object storage and files; nothing of workflows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Names skipped by [`upload_dir`]: version control, dependencies, build output.
pub const SKIPPED: [&str; 8] = [
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    ".skein",
    "__pycache__",
    ".DS_Store",
];

/// The object written last by [`upload_dir`]: its presence means the upload is whole.
pub const MANIFEST: &str = ".skein-manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a usable storage URL: {1}")]
    Url(String, String),
    #[error("the key `{key}` is not allowed: {why}")]
    Key { key: String, why: &'static str },
    #[error(
        "{0} is outside the storage allowlist (SKEIN_OBJECT_ALLOWLIST); add its bucket and prefix, or `*`"
    )]
    NotAllowed(String),
    #[error("the allowlist entry `{0}` is not a URL prefix such as s3://bucket/prefix or `*`")]
    Allowlist(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where objects may be written and read.
#[derive(Clone, Debug)]
pub struct Allowlist {
    /// `None`: not configured (everything allowed, with a warning).
    entries: Option<Vec<url::Url>>,
    warned: Arc<AtomicBool>,
}

impl Allowlist {
    /// From comma-separated URL prefixes (`s3://bucket/prefix,file:///srv/objects`), `*`
    /// for everything, or nothing (not configured).
    pub fn parse(text: Option<&str>) -> Result<Allowlist> {
        let entries = match text.map(str::trim) {
            None | Some("") => None,
            Some("*") => Some(Vec::new()),
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(|e| {
                        let url = url::Url::parse(e).map_err(|_| Error::Allowlist(e.into()))?;
                        if url.cannot_be_a_base() {
                            return Err(Error::Allowlist(e.into()));
                        }
                        Ok(url)
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(Allowlist {
            entries,
            warned: Arc::default(),
        })
    }

    /// Everything allowed, on purpose.
    pub fn everything() -> Allowlist {
        Allowlist {
            entries: Some(Vec::new()),
            warned: Arc::default(),
        }
    }

    /// Whether `url` may be used.
    pub fn check(&self, url: &url::Url) -> Result<()> {
        let Some(entries) = &self.entries else {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "skein: warning: no storage allowlist (SKEIN_OBJECT_ALLOWLIST), so any bucket and prefix may be used; set it, or `*` to allow everything on purpose"
                );
            }
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let under = |entry: &url::Url| {
            let (prefix, path) = (entry.path().trim_end_matches('/'), url.path());
            entry.scheme() == url.scheme()
                && entry.host_str() == url.host_str()
                && (path == prefix || path.starts_with(&format!("{prefix}/")))
        };
        if entries.iter().any(under) {
            Ok(())
        } else {
            Err(Error::NotAllowed(url.to_string()))
        }
    }
}

/// Checks a key: `/`-separated plain names, so that it stays under its prefix.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::Key {
            key: key.chars().take(200).collect(),
            why,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("it must be 1 to 1024 characters");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("it has an empty segment (a leading, trailing or double `/`)");
        }
        if segment == "." || segment == ".." {
            return bad("`.` and `..` are not names");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("each segment may hold only A-Z, a-z, 0-9, `.`, `_` and `-`");
        }
    }
    Ok(())
}

/// A place in object storage: a store and a prefix in it, named by a URL.
#[derive(Clone, Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    url: url::Url,
    prefix: ObjectPath,
    allow: Allowlist,
}

impl Objects {
    /// The objects under `url` (`file:///srv/objects`, `s3://bucket/prefix`, …). A path
    /// without a scheme is a local directory. A cloud store is configured as its SDKs
    /// are, from the environment: `AWS_*` (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible service…), `GOOGLE_*`
    /// (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`…) and `AZURE_*`
    /// (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`…); without keys, the
    /// platform's own credentials (instance metadata, workload identity) are used.
    pub fn open(url: &str, allow: Allowlist) -> Result<Objects> {
        Objects::open_with(url, allow, cloud_environment())
    }

    /// Like [`Objects::open`], configured by `options` (`aws_endpoint`,
    /// `google_base_url`, `azure_storage_account_key`…: the environment variables'
    /// names in lower case) instead of the environment.
    pub fn open_with(
        url: &str,
        allow: Allowlist,
        options: Vec<(String, String)>,
    ) -> Result<Objects> {
        let url = match url::Url::parse(url) {
            Ok(url) => url,
            Err(_) => {
                let path =
                    std::path::absolute(url).map_err(|e| Error::Url(url.into(), e.to_string()))?;
                url::Url::from_directory_path(&path)
                    .map_err(|_| Error::Url(url.into(), "not an absolute path".into()))?
            }
        };
        allow.check(&url)?;
        if url.scheme() == "file" {
            // The local store needs its directory to exist.
            let dir = url
                .to_file_path()
                .map_err(|_| Error::Url(url.to_string(), "not a local path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io(dir.clone(), e))?;
        }
        let (store, prefix) = object_store::parse_url_opts(&url, options).map_err(|e| {
            Error::Url(
                url.to_string(),
                format!("{e} (s3://, gs:// and az:// need skein built with the s3, gcs or azure feature)"),
            )
        })?;
        Ok(Objects {
            store: Arc::from(store),
            url,
            prefix,
            allow,
        })
    }

    /// The URL of the object at `key`.
    pub fn url_of(&self, key: &str) -> Result<url::Url> {
        check_key(key)?;
        let mut url = self.url.clone();
        url.path_segments_mut()
            .map_err(|_| Error::Url(self.url.to_string(), "cannot hold keys".into()))?
            .pop_if_empty()
            .extend(key.split('/'));
        self.allow.check(&url)?;
        Ok(url)
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        self.url_of(key)?;
        Ok(key
            .split('/')
            .fold(self.prefix.clone(), |path, segment| path.join(segment)))
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<url::Url> {
        let path = self.path(key)?;
        self.store.put(&path, PutPayload::from(bytes)).await?;
        self.url_of(key)
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        Ok(self.store.get(&path).await?.bytes().await?.to_vec())
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// What [`upload_dir`] did.
#[derive(Debug)]
pub struct Upload {
    /// Where the directory now is: `{to}/{hash}/`.
    pub url: url::Url,
    /// SHA-256 over the sorted relative paths and the bytes of the files, in hex.
    pub hash: String,
    pub files: usize,
    pub bytes: u64,
    /// True when that address was already whole, so nothing was sent.
    pub already_there: bool,
}

/// The files of `dir` to upload, sorted by relative path (with `/`), skipping
/// [`SKIPPED`] names and following no symbolic links.
pub fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| Error::Io(current.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Io(current.clone(), e))?;
            let name = entry.file_name();
            if SKIPPED.iter().any(|s| name == *s) {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::Io(path.clone(), e))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(dir)
                    .expect("under the directory")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((relative, path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The content address of `files`: SHA-256 over each relative path, a NUL, the file's
/// length as 8 bytes, and its bytes, in path order.
pub fn hash_files(files: &[(String, PathBuf)]) -> Result<(String, u64)> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut total = 0u64;
    for (relative, path) in files {
        let bytes = std::fs::read(path).map_err(|e| Error::Io(path.clone(), e))?;
        digest.update(relative.as_bytes());
        digest.update(&[0]);
        digest.update(&(bytes.len() as u64).to_be_bytes());
        digest.update(&bytes);
        total += bytes.len() as u64;
    }
    Ok((hex(digest.finish().as_ref()), total))
}

/// The environment variables that configure cloud stores, as `object_store` options.
fn cloud_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Uploads `dir` under `to`, content-addressed: to `{hash}/{relative path}`, with the
/// manifest last. When that manifest is there already, nothing is sent.
pub async fn upload_dir(dir: &Path, to: &Objects) -> Result<Upload> {
    let files = files_of(dir)?;
    let (hash, bytes) = hash_files(&files)?;
    let manifest_key = format!("{hash}/{MANIFEST}");
    let url = to
        .url_of(&format!("{hash}/{MANIFEST}"))?
        .join("./")
        .map_err(|e| Error::Url(to.url.to_string(), e.to_string()))?;
    let upload = |already_there| Upload {
        url: url.clone(),
        hash: hash.clone(),
        files: files.len(),
        bytes,
        already_there,
    };
    if to.exists(&manifest_key).await? {
        return Ok(upload(true));
    }
    for (relative, _) in &files {
        check_key(relative)?;
    }
    for (relative, path) in &files {
        let content = tokio::fs::read(path)
            .await
            .map_err(|e| Error::Io(path.clone(), e))?;
        to.put(&format!("{hash}/{relative}"), content).await?;
    }
    let manifest = serde_json::json!({
        "sha256": hash,
        "files": files.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        "bytes": bytes,
    });
    to.put(&manifest_key, manifest.to_string().into_bytes())
        .await?;
    Ok(upload(false))
}
