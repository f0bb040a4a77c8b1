//! One task on a worker: its process group, and the log of what it printed and how it
//! ended, which SSE clients replay from any point and then follow.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::usage::Sampler;
use crate::wire::{self, Ending, Exit, Usage, kind};

/// Output is sent in pieces of at most this many bytes, cut at line ends when it can be.
const CHUNK: usize = 8 << 10;

/// A partial line waits at most this long for its end before it is sent as it is.
const PARTIAL_LINE: Duration = Duration::from_millis(100);

/// After the task's process exits, how long its output pipes may take to drain (other
/// processes of its group may hold them) before the group is killed.
const DRAIN: Duration = Duration::from_secs(1);

/// What a task runs.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// The whole environment of the process: nothing of the worker's own leaks in.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) stdin: Option<String>,
    /// In a pseudo-terminal: stdout and stderr then come as one stream, `stdout`.
    pub(crate) pty: bool,
    pub(crate) timeout: Duration,
    /// The most output kept (and streamed); beyond it, a `truncated` event.
    pub(crate) max_output_bytes: usize,
}

/// One entry of a task's log: its `kind` (one of [`wire::kind`]) and its data (the
/// `wire` type of that kind); `exit` is always last.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub seq: u64,
    pub kind: &'static str,
    pub data: Value,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    output_bytes: usize,
    truncated: bool,
    ending: Option<Ending>,
}

pub(crate) struct Task {
    pub(crate) id: String,
    pub(crate) started_at: jiff::Timestamp,
    log: Mutex<Log>,
    /// The number of events in the log, for followers to wait on.
    count: watch::Sender<usize>,
    pub(crate) cancel: CancellationToken,
    /// Set when a shutdown, not a request, cancels the task.
    pub(crate) shutdown: CancellationToken,
    /// Secret values, masked in the output.
    masks: Arc<Vec<String>>,
    /// The task's process group once started, and whether it is stopped (paused).
    group: Mutex<(Option<nix::unistd::Pid>, bool)>,
}

impl Task {
    pub(crate) fn new(id: String, masks: Arc<Vec<String>>) -> Task {
        Task {
            id,
            started_at: jiff::Timestamp::now(),
            log: Mutex::default(),
            count: watch::Sender::new(0),
            cancel: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            masks,
            group: Mutex::new((None, false)),
        }
    }

    fn push(&self, kind: &'static str, data: Value) {
        self.push_ending(kind, data, None);
    }

    /// Appends an event, and with `ending` marks the log ended in the same step.
    fn push_ending(&self, kind: &'static str, data: Value, ending: Option<Ending>) {
        let mut log = self.log.lock().expect("log lock");
        let seq = log.events.len() as u64 + 1;
        log.events.push(Event { seq, kind, data });
        if ending.is_some() {
            log.ending = ending;
        }
        let n = log.events.len();
        drop(log);
        self.count.send_replace(n);
    }

    /// Returns once the task has ended and its exit is logged.
    pub(crate) async fn ended(&self) {
        let mut count = self.count.subscribe();
        while self.ending().is_none() {
            if count.changed().await.is_err() {
                return;
            }
        }
    }

    fn output(&self, stream: &'static str, bytes: &[u8], max: usize) {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for mask in self.masks.iter() {
            if text.contains(mask.as_str()) {
                text = text.replace(mask.as_str(), "***");
            }
        }
        {
            let mut log = self.log.lock().expect("log lock");
            if log.truncated {
                return;
            }
            if log.output_bytes + text.len() > max {
                log.truncated = true;
                drop(log);
                self.push(
                    kind::TRUNCATED,
                    data(wire::Truncated {
                        limit_bytes: max,
                        message: "the output is over the worker's limit (--max-output-bytes); \
                                  the rest is not kept"
                            .into(),
                    }),
                );
                return;
            }
            log.output_bytes += text.len();
        }
        let stream = stream.to_string();
        self.push(kind::OUTPUT, data(wire::Output { stream, text }));
    }

    /// Stops (`true`) or continues (`false`) the task's process group, and logs it as a
    /// `paused` or `resumed` event. Asking for the state it is in changes nothing; an
    /// ended task is left alone.
    pub(crate) fn pause(&self, pause: bool) {
        use nix::sys::signal::{Signal, killpg};
        let mut group = self.group.lock().expect("group lock");
        let (Some(pid), stopped) = *group else {
            // Not started yet: it starts stopped.
            group.1 = pause;
            return;
        };
        if stopped == pause || self.ending().is_some() {
            return;
        }
        let _ = killpg(
            pid,
            if pause {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            },
        );
        group.1 = pause;
        drop(group);
        self.push(if pause { kind::PAUSED } else { kind::RESUMED }, json!({}));
    }

    /// The events after `seq`, and whether the log has ended.
    pub(crate) fn events_after(&self, seq: u64) -> (Vec<Event>, bool) {
        let log = self.log.lock().expect("log lock");
        let from = (seq as usize).min(log.events.len());
        (log.events[from..].to_vec(), log.ending.is_some())
    }

    /// Waits until the log holds more than `seen` events.
    pub(crate) async fn changed(&self, seen: usize) {
        let mut count = self.count.subscribe();
        let _ = count.wait_for(|n| *n > seen).await;
    }

    pub(crate) fn ending(&self) -> Option<Ending> {
        self.log.lock().expect("log lock").ending
    }

    /// The task's state for `GET /run/{id}`: its exit event's data once it has ended.
    pub(crate) fn state(&self) -> Value {
        // `group` before `log`, never while holding it: `pause` takes them in that order.
        let paused = self.group.lock().expect("group lock").1;
        let log = self.log.lock().expect("log lock");
        let exit = log
            .events
            .last()
            .filter(|e| e.kind == kind::EXIT)
            .map(|e| e.data.clone());
        json!({
            "id": self.id,
            "status": match (log.ending.is_some(), paused) {
                (true, _) => "ended",
                (false, true) => "paused",
                (false, false) => "running",
            },
            "startedAt": self.started_at.to_string(),
            "events": log.events.len(),
            "exit": exit,
        })
    }

    fn end(
        &self,
        ending: Ending,
        code: Option<i32>,
        signal: Option<i32>,
        began: Instant,
        usage: Usage,
    ) {
        let exit = data(Exit {
            status: ending,
            code,
            signal,
            duration_ms: began.elapsed().as_millis() as u64,
            usage,
        });
        self.push_ending(kind::EXIT, exit, Some(ending));
    }

    /// Runs `spec` to its end, logging its output and how it ended.
    pub(crate) async fn run(self: Arc<Self>, spec: Spec) {
        let began = Instant::now();
        let spawned = if spec.pty {
            spawn_in_pty(&spec)
        } else {
            spawn_piped(&spec)
        };
        let (mut child, readers) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let text = format!("cannot start `{}`: {e}\n", spec.program);
                let stream = "stderr".into();
                self.push(kind::OUTPUT, data(wire::Output { stream, text }));
                self.end(Ending::FailedToStart, None, None, began, Usage::default());
                return;
            }
        };
        let pid = child.id().map(|id| nix::unistd::Pid::from_raw(id as i32));
        let group = GroupGuard(pid);
        let paused_early = {
            let mut group = self.group.lock().expect("group lock");
            group.0 = pid;
            std::mem::take(&mut group.1)
        };
        if paused_early {
            self.pause(true);
        }
        let max = spec.max_output_bytes;
        let reader = self.clone();
        // Read while the process runs, on a task of its own.
        let mut output = tokio::spawn(async move {
            futures::future::join_all(
                readers
                    .into_iter()
                    .map(|(stream, r)| pump(r, stream, &reader, max)),
            )
            .await;
        });
        let mut sampler = Sampler::new(pid.map_or(0, |p| p.as_raw()));
        let sampling = async {
            loop {
                sampler.sample();
                tokio::time::sleep(crate::usage::INTERVAL).await;
            }
        };
        let ending = tokio::select! {
            never = sampling => match never {},
            status = child.wait() => match status {
                Ok(status) => {
                    // Other processes of the group may still hold the pipes.
                    let _ = tokio::time::timeout(DRAIN, &mut output).await;
                    Some(status)
                }
                Err(_) => None,
            },
            _ = self.cancel.cancelled() => None,
            _ = tokio::time::sleep(spec.timeout) => None,
        };
        drop(group);
        use std::os::unix::process::ExitStatusExt;
        match ending {
            Some(status) => self.end(
                Ending::Exited,
                status.code(),
                status.signal(),
                began,
                sampler.usage,
            ),
            None => {
                let _ = child.kill().await;
                let why = if self.shutdown.is_cancelled() {
                    Ending::Killed
                } else if self.cancel.is_cancelled() {
                    Ending::Cancelled
                } else {
                    Ending::TimedOut
                };
                let _ = tokio::time::timeout(DRAIN, &mut output).await;
                self.end(why, None, Some(9), began, sampler.usage);
            }
        }
        // Whatever still holds the pipes is dead; its last words are not waited for.
        output.abort();
    }
}

/// An event's data, from its wire type.
fn data(of: impl Serialize) -> Value {
    serde_json::to_value(of).expect("wire types are JSON")
}

/// A task's output streams, by name.
type Readers = Vec<(&'static str, Box<dyn AsyncRead + Send + Unpin>)>;

/// Starts the process with pipes for its stdin, stdout and stderr, in a process group of
/// its own.
fn spawn_piped(spec: &Spec) -> std::io::Result<(tokio::process::Child, Readers)> {
    let mut child = tokio::process::Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    if let (Some(input), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    Ok((
        child,
        vec![("stdout", Box::new(stdout)), ("stderr", Box::new(stderr))],
    ))
}

/// Starts the process in a new pseudo-terminal, as the leader of a session (and so of a
/// process group) of its own; its terminal output is one stream.
fn spawn_in_pty(spec: &Spec) -> std::io::Result<(tokio::process::Child, Readers)> {
    let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
    pty.resize(pty_process::Size::new(40, 120))
        .map_err(std::io::Error::other)?;
    let child = pty_process::Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(std::io::Error::other)?;
    let (read, mut write) = pty.into_split();
    if let Some(input) = spec.stdin.clone() {
        tokio::spawn(async move {
            let _ = write.write_all(input.as_bytes()).await;
            // Kept open: a closed terminal would hang up the task.
            std::future::pending::<()>().await;
        });
    }
    Ok((child, vec![("stdout", Box::new(read))]))
}

/// Reads `reader` into the task's log: whole lines where it can, a partial line after a
/// short pause, and never more than [`CHUNK`] bytes in one event.
async fn pump(mut reader: impl AsyncRead + Unpin, stream: &'static str, task: &Task, max: usize) {
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let read = if pending.is_empty() {
            reader.read(&mut chunk).await
        } else {
            match tokio::time::timeout(PARTIAL_LINE, reader.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_) => {
                    task.output(stream, &std::mem::take(&mut pending), max);
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while pending.len() >= CHUNK {
            let rest = pending.split_off(CHUNK);
            task.output(stream, &std::mem::replace(&mut pending, rest), max);
        }
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let rest = pending.split_off(end + 1);
            task.output(stream, &std::mem::replace(&mut pending, rest), max);
        }
    }
    if !pending.is_empty() {
        task.output(stream, &pending, max);
    }
}

/// Sends SIGKILL to a process group when dropped.
struct GroupGuard(Option<nix::unistd::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
