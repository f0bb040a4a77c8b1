//! Live progress of an execution on stderr (only when stderr is a terminal):
//! tasks done, fan-out iterations done of total, retries, elapsed time; and the lines
//! Cloud Workflows' `sys.log` logs (always).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::events::Lifecycle;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Watches an execution's events and keeps a one-line summary on stderr.
pub(crate) struct Progress {
    bar: ProgressBar,
    tasks: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    /// The latest fan-out: task, iterations done, total.
    fan_out: Mutex<Option<(String, u64, u64)>>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar,
            tasks: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            fan_out: Mutex::new(None),
        }
    }

    /// Removes the line; the outcome is printed after.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn redraw(&self) {
        let mut msg = format!("{} tasks done", self.tasks.load(Ordering::Relaxed));
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            msg += &format!(", {failed} failed");
        }
        let retries = self.retries.load(Ordering::Relaxed);
        if retries > 0 {
            msg += &format!(", {retries} retries");
        }
        if let Some((task, done, total)) = &*self.fan_out.lock().expect("progress lock") {
            msg += &format!(" · {task}: {done}/{total}");
        }
        self.bar.set_message(msg);
    }
}

impl engine::Observer for Progress {
    fn event(&self, _execution: &str, event: &store::Event) {
        if event.type_ == gcw::LOG_EVENT {
            // What Cloud Workflows' `sys.log` logs, above the progress line.
            let line = gcw::log_line(&event.data.value());
            self.bar.suspend(|| eprintln!("skein: {line}"));
            return;
        }
        match Lifecycle::parse(&event.type_) {
            Some(Lifecycle::TaskCompleted) => {
                self.tasks.fetch_add(1, Ordering::Relaxed);
            }
            Some(Lifecycle::TaskFaulted) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Lifecycle::TaskRetried) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Some(Lifecycle::TaskProgress) => {
                let data = event.data.value();
                let task = data["task"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default();
                let count = |k: &str| data[k].as_u64().unwrap_or(0);
                *self.fan_out.lock().expect("progress lock") =
                    Some((task.to_string(), count("done"), count("total")));
            }
            _ => return,
        }
        self.redraw();
    }
}
