//! Progress of long scans on a terminal: bytes read of the total, rate and time left, redrawn in place on stderr.
//! Nothing is drawn when stderr is not a terminal, so logs and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::decode::BytesRead;

/// A running progress line; dropping it (or [`Progress::finish`]) clears the line.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing when stderr is a terminal.
    pub fn start(label: &str, bytes_read: BytesRead, total: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = Arc::clone(&stop);
            let label = label.to_owned();
            std::thread::spawn(move || draw_until(&label, &bytes_read, total, &stop))
        });
        Progress { stop, thread }
    }

    pub fn finish(mut self) {
        self.stop_drawing();
    }

    fn stop_drawing(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_drawing();
    }
}

fn draw_until(label: &str, bytes_read: &BytesRead, total: u64, stop: &AtomicBool) {
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let line = line(label, bytes_read.load(Ordering::Relaxed), total, started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// `scanning: 412.3 / 666.0 MiB (62%), 98.1 MiB/s, 3 s left`.
fn line(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let (done_mib, total_mib) = (done as f64 / MIB, total as f64 / MIB);
    let percent = if total > 0 { 100.0 * done as f64 / total as f64 } else { 0.0 };
    let rate = done_mib / elapsed.as_secs_f64().max(1e-3);
    let left = if rate > 0.0 && total >= done {
        format!(", {:.0} s left", (total_mib - done_mib) / rate)
    } else {
        String::new()
    };
    format!("{label}: {done_mib:.1} / {total_mib:.1} MiB ({percent:.0}%), {rate:.1} MiB/s{left}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_share_rate_and_time_left() {
        let mib = 1024 * 1024;
        let text = line("scanning", 100 * mib, 400 * mib, Duration::from_secs(2));
        assert_eq!(text, "scanning: 100.0 / 400.0 MiB (25%), 50.0 MiB/s, 6 s left");
    }
}
