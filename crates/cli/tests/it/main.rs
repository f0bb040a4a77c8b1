//! The `skein` binary, run as a real process: output format, exit codes and
//! hostile files, as a user meets them.

mod a2a;
mod asyncapi;
mod catalog;
mod cloud_workflows;
pub(crate) mod container;
pub(crate) mod crash;
mod ctk;
mod dashboard;
mod deploy;
mod digest;
mod egress;
mod extensions;
mod google_auth;
pub(crate) mod grpc;
pub(crate) mod grpc_call;
mod mcp;
mod oidc;
mod replicas;
mod run;
mod schedules;
pub(crate) mod server;
mod spec_examples;
mod suite;
mod telemetry;
mod tool_calls;
mod worker;
mod zigflow;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use expect_test::expect;

fn skein(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(args)
        .output()
        .expect("runs skein")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch file for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, contents: &[u8]) -> Scratch {
        let dir = std::env::temp_dir().join(format!("skein-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        Scratch(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn three_mistakes_give_three_diagnostics_like_a_compiler() {
    let file = repo().join("crates/dsl/tests/data/invalid/three-mistakes.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .current_dir(file.parent().unwrap())
        .args(["validate", "three-mistakes.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "diagnostics go to stderr");
    expect![[r#"
        three-mistakes.yaml:12:7: error: unknown key `tiemout` in task `getPet`
           12 |       tiemout:
              |       ^^^^^^^
              = help: did you mean `timeout`?
              = path: /do/0/getPet/tiemout
        three-mistakes.yaml:18:19: error: `then: notifySold` does not name a task in this list
           18 |             then: notifySold
              |                   ^^^^^^^^^^
              = help: did you mean `notify`?
              = path: /do/1/checkPet/switch/0/sold/then
        three-mistakes.yaml:23:52: error: undefined function `ascii_upcas/0`
           23 |         message: ${ "Pet \(.name) is " + .status | ascii_upcas }
              |                                                    ^^^^^^^^^^^
              = help: did you mean `ascii_upcase`?
              = path: /do/2/notify/set/message
        1 file checked: 0 valid, 1 invalid (3 errors)
    "#]]
    .assert_eq(&stderr(&out));
}

#[test]
fn valid_files_exit_zero_and_say_so() {
    let hello = repo().join("examples/hello.yaml");
    let out = skein(&["validate", hello.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("hello.yaml: valid (examples/hello 1.0.0, 4 top-level tasks)\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn json_diagnostics_on_stdout() {
    let file = repo().join("crates/dsl/tests/data/invalid/three-mistakes.yaml");
    let hello = repo().join("examples/hello.yaml");
    let out = skein(&[
        "validate",
        "--json",
        hello.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(records[0]["valid"], true);
    assert_eq!(records[0]["diagnostics"], serde_json::json!([]));
    assert_eq!(records[1]["valid"], false);
    let d = &records[1]["diagnostics"];
    assert_eq!(d.as_array().unwrap().len(), 3);
    assert_eq!(d[0]["line"], 12);
    assert_eq!(d[0]["column"], 7);
    assert_eq!(d[0]["end_column"], 14);
    assert_eq!(d[0]["severity"], "error");
    assert_eq!(d[0]["path"], "/do/0/getPet/tiemout");
    assert_eq!(d[0]["help"], "did you mean `timeout`?");
    assert_eq!(d[2]["line"], 23);
}

#[test]
fn strict_flags_extensions() {
    let fan_out = repo().join("examples/render-fan-out.yaml");
    let lenient = skein(&["validate", fan_out.to_str().unwrap()]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    let strict = skein(&["validate", "--strict", fan_out.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        stderr(&strict)
            .contains("render-fan-out.yaml:50:9: error: `for.concurrency` is a skein extension"),
        "{}",
        stderr(&strict)
    );
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(skein(&["validate"]).status.code(), Some(2));
    assert_eq!(
        skein(&["validate", "--no-such-flag", "x.yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        skein(&["validate", "--max-size", "lots", "x.yaml"])
            .status
            .code(),
        Some(2)
    );
    let missing = skein(&["validate", "/nonexistent/flow.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).starts_with("skein: cannot read /nonexistent/flow.yaml:"),
        "{}",
        stderr(&missing)
    );
    let dir = skein(&["validate", std::env::temp_dir().to_str().unwrap()]);
    assert_eq!(dir.status.code(), Some(2));
    assert!(stderr(&dir).contains("it is a directory"));
}

#[test]
fn help_explains_the_command() {
    let out = skein(&["validate", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit status: 0 if every file is valid",
        "--strict",
        "--json",
        "--max-size",
        "skein validate examples/*.yaml",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn hostile_files_get_clear_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty.yaml",
            vec![],
            "empty.yaml:1:1: error: the document is empty",
        ),
        (
            "binary.yaml",
            (0..=255u8).collect(),
            "error: this is a binary file, not a YAML or JSON document",
        ),
        (
            "malformed.yaml",
            b"do: [a, b\nx: {".to_vec(),
            "malformed.yaml:2:2: error: illegal placement of ':' indicator",
        ),
        (
            "bomb.yaml",
            bomb().into_bytes(),
            "error: the document has more than 250000 nodes",
        ),
    ];
    for (name, contents, needle) in cases {
        let file = Scratch::new(name, &contents);
        let out = skein(&["validate", file.path()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{name}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{name}: {}",
            stderr(&out)
        );
    }
}

fn bomb() -> String {
    std::fs::read_to_string(repo().join("crates/dsl/tests/data/hostile/alias-bomb.yaml")).unwrap()
}

#[test]
fn a_100_mb_file_is_refused_without_reading_it() {
    let file = Scratch::new("huge.yaml", b"");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file.0)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let started = std::time::Instant::now();
    let out = skein(&["validate", file.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: the document is 100.0 MiB, larger than the 4.0 MiB limit for a workflow definition"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("help: use --max-size to raise the limit"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it must not read 100 MB to refuse it"
    );
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let source = std::fs::read(repo().join("examples/hello.yaml")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&source).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("-: valid (examples/hello 1.0.0"));
}

#[test]
fn upload_sends_a_directory_once_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(site.join("css/site.css"), "h1 {}").unwrap();
    let to = dir.path().join("bucket");
    let upload = |extra: &[&str]| {
        let mut args = vec![
            "upload",
            site.to_str().unwrap(),
            "--json",
            "--to",
            to.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
            .args(&args)
            .env("SKEIN_OBJECT_ALLOWLIST", "*")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    let (code, out, err) = upload(&[]);
    assert_eq!(code, Some(0), "{err}");
    let first: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (first["files"].as_u64(), first["alreadyThere"].as_bool()),
        (Some(2), Some(false))
    );
    let hash = first["sha256"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(to.join(hash).join("css/site.css")).unwrap(),
        "h1 {}"
    );
    let (_, out, _) = upload(&[]);
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (second["sha256"].as_str(), second["alreadyThere"].as_bool()),
        (Some(hash), Some(true))
    );

    // Outside the allowlist: refused, nothing written.
    let elsewhere = dir.path().join("elsewhere");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "upload",
            site.to_str().unwrap(),
            "--to",
            elsewhere.to_str().unwrap(),
        ])
        .env(
            "SKEIN_OBJECT_ALLOWLIST",
            url::Url::from_directory_path(&to).unwrap().as_str(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("outside the storage allowlist"),
        "{}",
        stderr(&out)
    );
    assert!(!elsewhere.exists());
}
