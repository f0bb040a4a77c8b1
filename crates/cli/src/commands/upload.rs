//! `skein upload`: a directory into object storage, content-addressed, sent only when
//! that content is not there yet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;

/// Upload a directory to object storage under the SHA-256 of its content, and print
/// where it is.
///
/// The address is the SHA-256 over the sorted relative paths and the bytes of the files
/// (skipping .git, .hg, .svn, node_modules, target, .skein, __pycache__ and .DS_Store),
/// so the same content always lands at the same place: `TO/HASH/`. When that place holds
/// a whole upload already (its manifest is written last), nothing is sent.
///
/// Storage URLs: a local directory or file:///…, and s3://, gs:// or az:// in builds
/// with those features. SKEIN_OBJECT_ALLOWLIST (comma-separated URL prefixes, or `*`)
/// limits where anything may be written.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein upload ./site\n  skein upload ./site --to s3://my-bucket/sites"
)]
pub(crate) struct Args {
    /// The directory to upload.
    dir: PathBuf,

    /// Where to [default: DATA_DIR/objects/uploads].
    #[arg(long, value_name = "URL")]
    to: Option<String>,

    /// The local data directory, for the default destination.
    #[arg(long, value_name = "DIR", default_value = ".skein")]
    data_dir: PathBuf,

    /// Where objects may be written: URL prefixes (bucket and key prefix), comma-separated,
    /// or `*`.
    #[arg(long, env = "SKEIN_OBJECT_ALLOWLIST", value_name = "LIST")]
    allowlist: Option<String>,

    /// Print {url, sha256, files, bytes, alreadyThere} as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::run_to_exit(upload(args))
}

async fn upload(args: Args) -> Result<()> {
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a directory", args.dir.display());
    }
    let to = match &args.to {
        Some(to) => to.clone(),
        None => args
            .data_dir
            .join("objects")
            .join("uploads")
            .to_string_lossy()
            .into_owned(),
    };
    let allow = objects::Allowlist::parse(args.allowlist.as_deref())?;
    let objects = objects::Objects::open(&to, allow)?;
    let upload = objects::upload_dir(&args.dir, &objects)
        .await
        .with_context(|| format!("cannot upload {}", args.dir.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "url": upload.url.as_str(),
                "sha256": upload.hash,
                "files": upload.files,
                "bytes": upload.bytes,
                "alreadyThere": upload.already_there,
            })
        );
    } else {
        eprintln!(
            "skein: {} file{} ({} bytes) {}",
            upload.files,
            if upload.files == 1 { "" } else { "s" },
            upload.bytes,
            if upload.already_there {
                "already there: nothing sent"
            } else {
                "uploaded"
            }
        );
        println!("{}", upload.url);
    }
    Ok(())
}
