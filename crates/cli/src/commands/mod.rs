//! One module per `skein` command.

pub(crate) mod bench;
pub(crate) mod bench_api;
pub(crate) mod exec;
pub(crate) mod run;
pub(crate) mod server;
pub(crate) mod test;
pub(crate) mod validate;
pub(crate) mod worker;

/// Runs a command's async body on a multi-threaded runtime with roomy thread stacks
/// (the engine's walks over deep documents recurse).
pub(crate) fn block_on(
    body: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt.block_on(body),
        Err(e) => {
            eprintln!("skein: cannot start the async runtime: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Opens the journal under `data_dir`: with `fast`, commits do not wait for the disk.
/// Returns it with the database file's path, for messages.
pub(crate) fn open_journal(
    data_dir: &std::path::Path,
    fast: bool,
) -> anyhow::Result<(std::sync::Arc<dyn store::Store>, std::path::PathBuf)> {
    use anyhow::Context;
    let durability = if fast {
        store::Durability::Process
    } else {
        store::Durability::Full
    };
    let db = data_dir.join("skein.db");
    let store = store::sqlite::SqliteStore::open(&db, durability)
        .with_context(|| format!("cannot open the journal at {}", db.display()))?;
    Ok((std::sync::Arc::new(store), db))
}
