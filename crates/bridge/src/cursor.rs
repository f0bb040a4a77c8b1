//! The bridge's replay cursor, kept in its working directory: the position of the last
//! event of skein's log that it is done with, and a result acknowledged by the consumer
//! but not yet posted back to skein. Written to a temporary file, synced and renamed
//! over the old one, so that a crash leaves one or the other, never half.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The file's name in the working directory.
pub const FILE: &str = ".skein-bridge-cursor.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The log position to resume after.
    pub after: u64,
    /// A result the consumer gave for the event at `after`, still to post to skein.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Callback>,
}

/// A CloudEvent to post to an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    pub execution: String,
    pub event: serde_json::Value,
}

/// Where the cursor lives; nowhere when the bridge runs without persistence.
pub struct CursorFile {
    path: Option<PathBuf>,
}

impl CursorFile {
    pub fn new(dir: Option<PathBuf>) -> CursorFile {
        CursorFile {
            path: dir.map(|d| d.join(FILE)),
        }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The saved cursor, if there is one; an unreadable file is an error, not a fresh
    /// start, so that nothing is delivered twice by accident.
    pub fn load(&self) -> std::io::Result<Option<Saved>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a bridge cursor: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, saved: &Saved) -> std::io::Result<()> {
        use std::io::Write;
        let Some(path) = &self.path else {
            return Ok(());
        };
        let temporary = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(saved).expect("a cursor serializes"))?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
