//! The bridge's working directory: `WORK_ROOT` joined with `WORK_PREFIX_TEMPLATE`, whose
//! placeholders (`{userId}`, `{projectId}`, `{workspaceId}`, `{sessionId}`) come from the
//! context. Values are checked before they touch a path, and the resolved directory must
//! stay under the root even through symbolic links.

use std::path::{Component, Path, PathBuf};

/// Whose work this is: the values of the template's placeholders.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub user_id: String,
    pub project_id: String,
    pub workspace_id: Option<String>,
    pub session_id: Option<String>,
}

/// The value an optional placeholder takes when its variable is unset.
pub const UNSET: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{variable} (`{value}`) cannot name a directory: {why} (use 1 to 128 letters, digits, \
         `.`, `_` or `-`)"
    )]
    Value {
        variable: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("WORK_PREFIX_TEMPLATE `{template}`: {why}")]
    Template { template: String, why: String },
    #[error("the working directory {path} is outside WORK_ROOT {root} (through a symbolic link)")]
    Escapes { path: PathBuf, root: PathBuf },
}

/// Checks one placeholder value: a single plain path component.
fn check(variable: &'static str, value: &str) -> Result<(), Error> {
    let fail = |why| Error::Value {
        variable,
        value: value.escape_debug().to_string(),
        why,
    };
    if value.is_empty() {
        return Err(fail("it is empty"));
    }
    if value.contains('\0') {
        return Err(fail("it holds a NUL character"));
    }
    if value.starts_with('/') {
        return Err(fail("it is an absolute path"));
    }
    if value.contains('/') || value.contains('\\') {
        return Err(fail("it holds a path separator"));
    }
    if value == "." || value == ".." {
        return Err(fail("it names a directory relative to another"));
    }
    if value.len() > 128
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(fail("it holds a character outside the allowed ones"));
    }
    Ok(())
}

/// The directory under `root` that `template` names for `context`, checked but not
/// created: relative, with every placeholder replaced by a checked value.
pub fn resolve(root: &Path, template: &str, context: &Context) -> Result<PathBuf, Error> {
    let template_error = |why: &str| Error::Template {
        template: template.to_string(),
        why: why.to_string(),
    };
    let values: [(&str, &'static str, Option<&str>); 4] = [
        ("{userId}", "X_USER_ID", Some(context.user_id.as_str())),
        (
            "{projectId}",
            "X_PROJECT_ID",
            Some(context.project_id.as_str()),
        ),
        (
            "{workspaceId}",
            "X_WORKSPACE_ID",
            Some(context.workspace_id.as_deref().unwrap_or(UNSET)),
        ),
        (
            "{sessionId}",
            "X_SESSION_ID",
            Some(context.session_id.as_deref().unwrap_or(UNSET)),
        ),
    ];
    let mut text = template.to_string();
    for (placeholder, variable, value) in values {
        if text.contains(placeholder) {
            let value = value.unwrap_or(UNSET);
            check(variable, value)?;
            text = text.replace(placeholder, value);
        }
    }
    if let Some(start) = text.find('{') {
        let end = text[start..]
            .find('}')
            .map_or(text.len(), |e| start + e + 1);
        return Err(template_error(&format!(
            "`{}` is not a placeholder (use {{userId}}, {{projectId}}, {{workspaceId}}, {{sessionId}})",
            &text[start..end]
        )));
    }
    if text.contains('\0') {
        return Err(template_error("it holds a NUL character"));
    }
    let relative = PathBuf::from(&text);
    for component in relative.components() {
        match component {
            Component::Normal(_) => {}
            Component::CurDir => {}
            _ => {
                return Err(template_error(
                    "it must be a relative path without `..` (it goes under WORK_ROOT)",
                ));
            }
        }
    }
    Ok(root.join(relative))
}

/// Creates the directory `resolve` gave, one component at a time, and checks that
/// what was created (or found) is still under `root` once symbolic links are followed.
/// `Ok(Err(why))` when `root` does not exist or the directory is not writable: the
/// bridge then runs without persistence.
pub fn prepare(root: &Path, dir: &Path) -> Result<Result<PathBuf, String>, Error> {
    let Ok(real_root) = root.canonicalize() else {
        return Ok(Err(format!("WORK_ROOT {} does not exist", root.display())));
    };
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    let mut path = real_root.clone();
    for component in relative.components() {
        path.push(component);
        if !path.exists()
            && path.symlink_metadata().is_err()
            && let Err(e) = std::fs::create_dir(&path)
        {
            return Ok(Err(format!("cannot create {}: {e}", path.display())));
        }
        // Every step is checked, so a link that escapes is refused before anything is
        // written through it; a link that leads nowhere cannot be checked, so it is
        // refused too.
        let escapes = || Error::Escapes {
            path: dir.to_path_buf(),
            root: root.to_path_buf(),
        };
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(_)
                if path
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                return Err(escapes());
            }
            Err(e) => return Ok(Err(format!("cannot use {}: {e}", path.display()))),
        };
        if !real.starts_with(&real_root) {
            return Err(escapes());
        }
        path = real;
    }
    // Writable? A probe file says for sure.
    let probe = path.join(".skein-bridge-probe");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(Ok(path))
        }
        Err(e) => Ok(Err(format!("{} is not writable: {e}", path.display()))),
    }
}
