//! Throwaway PostgreSQL clusters for the tests of the PostgreSQL store and the
//! replicas, and for `skein bench --postgres`: `initdb` in a temporary directory, a
//! server on a free loopback port, everything removed when the cluster is dropped (or
//! when the process that made it dies).

use std::path::{Path, PathBuf};

/// The variable that turns a skip into a failure (CI sets it).
pub const REQUIRE_VAR: &str = "SKEIN_REQUIRE_POSTGRES";

/// A throwaway PostgreSQL cluster, for tests and benchmarks: `initdb` in a temporary
/// directory and a server on a free loopback port, stopped and deleted when dropped.
/// Started from the system's binaries (`SKEIN_PG_BIN`, else `initdb` on the `PATH`,
/// else the newest `/usr/lib/postgresql/*/bin`). As root, the server runs as the
/// `postgres` user (PostgreSQL refuses to run as root).
pub struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

impl TempCluster {
    /// The directory of the system's PostgreSQL server binaries, if there is one.
    pub fn binaries() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("SKEIN_PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        });
        if let Some(dir) = on_path {
            // A folder of links to some of them (`/usr/local/bin`, say): the folder they
            // point into has the others (`createdb`) too.
            let real = dir
                .join("initdb")
                .canonicalize()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|real| real.join("createdb").is_file());
            return Some(real.unwrap_or(dir));
        }
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    /// Creates and starts a cluster, or `None` when the system has no PostgreSQL.
    pub fn start() -> std::io::Result<Option<TempCluster>> {
        let Some(bin) = TempCluster::binaries() else {
            return Ok(None);
        };
        let dir = std::env::temp_dir().join(format!("skein-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let user = if nix::unistd::Uid::effective().is_root() {
            let account = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .or_else(|| nix::unistd::User::from_name("nobody").ok().flatten())
                .ok_or_else(|| std::io::Error::other("running as root, and there is no `postgres` or `nobody` user to run PostgreSQL as"))?;
            let ids = (account.uid.as_raw(), account.gid.as_raw());
            std::os::unix::fs::chown(&dir, Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        let port = crate::free_port();
        let cluster = TempCluster {
            dir,
            bin,
            port,
            user,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        cluster.pg_ctl_start()?;
        cluster.reap_after(std::process::id())?;
        Ok(Some(cluster))
    }

    /// Starts a watchdog that stops the server and deletes the directory once process
    /// `pid` is gone, for a cluster that is never dropped (a test binary's shared one,
    /// or one whose process was killed).
    fn reap_after(&self, pid: u32) -> std::io::Result<()> {
        let dir = self.dir.display();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             kill -QUIT $(head -n 1 '{dir}/data/postmaster.pid' 2>/dev/null) 2>/dev/null; \
             sleep 2; rm -rf '{dir}'"
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(self.bin.join(program));
        command.args(args).stdin(std::process::Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let output = command.output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    fn pg_ctl_start(&self) -> std::io::Result<()> {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=on -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server at once (`immediate`: as a crash would), keeping its data.
    pub fn stop(&self) -> std::io::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts the server again after [`TempCluster::stop`].
    pub fn restart(&self) -> std::io::Result<()> {
        self.pg_ctl_start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` (with the cluster's own `createdb`) and returns its URL.
    pub fn database(&self, name: &str) -> std::io::Result<String> {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        )?;
        Ok(self.url(name))
    }

    /// A cluster for a test, or `None` (after saying so) where the system has no
    /// PostgreSQL; with `SKEIN_REQUIRE_POSTGRES=1` (as in CI) a missing PostgreSQL
    /// fails the test instead.
    pub fn for_test(test: &str) -> Option<TempCluster> {
        match TempCluster::start() {
            Ok(Some(cluster)) => Some(cluster),
            Ok(None) => {
                crate::skip(
                    test,
                    REQUIRE_VAR,
                    "no PostgreSQL server binaries (initdb, pg_ctl) were found",
                    "set SKEIN_PG_BIN, or install the postgresql package",
                );
                None
            }
            Err(e) => panic!("{test}: could not start a throwaway PostgreSQL: {e}"),
        }
    }

    /// The server's log so far, to show when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
